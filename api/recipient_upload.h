// Pure reader of a recipients upload (POST /v1/campaigns/{id}/recipients):
// NDJSON (one {"email": "...", "data": {"field": "string"}} object per line)
// or CSV (RFC 4180: header row "email,<field>,...", quoted fields with ""
// escapes, commas and line breaks inside quotes, CRLF or LF). No I/O.
//
// In: the whole body (a view; must outlive the reader). Out: one record at a
// time as a storage::Recipient (address and fields only). Blank lines are
// skipped. Problems name where they are: "line N" for NDJSON (1-based,
// physical lines), "row N" for CSV (1-based records, the header is row 1).
// Checks syntax, address validity and field shape; merge fields against the
// templates are the Api's job. One thread at a time.
#ifndef SALVO_API_RECIPIENT_UPLOAD_H_
#define SALVO_API_RECIPIENT_UPLOAD_H_

#include <string>
#include <vector>

#include <rapidjson/document.h>

#include "absl/strings/string_view.h"
#include "storage/records.pb.h"

namespace salvo::api {

class RecipientReader {
 public:
  enum class Format { kNdjson, kCsv };
  enum class Result { kRecord, kEnd, kError };

  // From a Content-Type ("text/csv; charset=utf-8" -> kCsv); false if it is
  // neither application/x-ndjson (or application/jsonl) nor text/csv.
  static bool FormatFor(absl::string_view content_type, Format* format);

  RecipientReader(Format format, absl::string_view body);

  // kRecord: *rec holds the next recipient (cleared first). kError: *where is
  // "line N" / "row N" and *message says what is wrong; the reader stays in
  // error. kEnd: no more records.
  Result Next(storage::Recipient* rec, std::string* where,
              std::string* message);
  // True when only blank lines remain.
  bool AtEnd();
  // Records returned so far.
  int64_t records() const { return records_; }

  // Streaming (a body that arrives in pieces): replaces the input with the
  // next complete part of the body, whole lines (NDJSON) or records (CSV, see
  // CompleteEnd), keeping the CSV header, the line numbers and the counts.
  // kEnd then means "need more input".
  void SetInput(absl::string_view body) {
    body_ = body;
    pos_ = 0;
  }
  // Bytes of the current input consumed so far.
  size_t consumed() const { return pos_; }
  // Physical lines (NDJSON) or CSV rows consumed so far.
  int64_t lines() const { return line_; }

  // Where the complete records of a partly received body end: just past the
  // last line break that is not inside a CSV quoted field. Scans
  // buf[*scanned, size) and advances *scanned; *in_quotes carries the CSV
  // quote state between calls (unused for NDJSON). Returns the new end, or
  // `end` when no later break was found.
  static size_t CompleteEnd(Format format, absl::string_view buf, size_t end,
                            size_t* scanned, bool* in_quotes);

 private:
  Result NextNdjson(storage::Recipient* rec, std::string* where,
                    std::string* message);
  Result NextCsv(storage::Recipient* rec, std::string* where,
                 std::string* message);
  // One CSV record into fields_; false on a quoting error. Advances pos_.
  bool ReadCsvRecord(std::string* message);
  void SkipBlankLines();

  Format format_;
  absl::string_view body_;
  size_t pos_ = 0;
  int64_t line_ = 0;  // physical lines consumed (NDJSON) / rows (CSV)
  int64_t records_ = 0;
  bool failed_ = false;
  bool have_header_ = false;
  std::vector<std::string> header_;
  std::vector<std::string> fields_;
  rapidjson::Document doc_;
};

}  // namespace salvo::api

#endif  // SALVO_API_RECIPIENT_UPLOAD_H_
