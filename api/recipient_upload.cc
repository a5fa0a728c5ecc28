// RecipientReader (see recipient_upload.h). Pure; one thread at a time.
#include "api/recipient_upload.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "api/address.h"

namespace salvo::api {
namespace {

absl::string_view Str(const rapidjson::Value& v) {
  return absl::string_view(v.GetString(), v.GetStringLength());
}

// The common NDJSON shape {"email":"...","data":{"k":"v",...}} (keys in
// that order, "data" optional, strings without escapes or control bytes)
// read without building a DOM. False for anything else: the caller then
// parses the line with rapidjson, which also words the errors.
class FastLine {
 public:
  explicit FastLine(absl::string_view line) : p_(line.data()), end_(p_ + line.size()) {}

  bool Parse(storage::Recipient* rec) {
    absl::string_view key, value;
    if (!Lit('{') || !Str(&key) || key != "email" || !Lit(':') ||
        !Str(&value) || !IsValidMailbox(value)) {
      return false;
    }
    rec->set_address(value.data(), value.size());
    if (Lit(',')) {
      if (!Str(&key) || key != "data" || !Lit(':') || !Lit('{')) return false;
      if (!Lit('}')) {
        do {
          if (!Str(&key) || !Lit(':') || !Str(&value)) return false;
          storage::Field* f = rec->add_fields();
          f->set_name(key.data(), key.size());
          f->set_value(value.data(), value.size());
        } while (Lit(','));
        if (!Lit('}')) return false;
      }
    }
    if (!Lit('}')) return false;
    Ws();
    return p_ == end_;
  }

 private:
  void Ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\r')) ++p_;
  }
  bool Lit(char c) {
    Ws();
    if (p_ < end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  bool Str(absl::string_view* out) {
    if (!Lit('"')) return false;
    const char* start = p_;
    while (p_ < end_) {
      const unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        *out = absl::string_view(start, p_ - start);
        ++p_;
        return true;
      }
      if (c == '\\' || c < 0x20) return false;
      ++p_;
    }
    return false;
  }
  const char* p_;
  const char* end_;
};

}  // namespace

bool RecipientReader::FormatFor(absl::string_view content_type,
                                Format* format) {
  absl::string_view media = content_type.substr(0, content_type.find(';'));
  media = absl::StripAsciiWhitespace(media);
  if (absl::EqualsIgnoreCase(media, "application/x-ndjson") ||
      absl::EqualsIgnoreCase(media, "application/jsonl")) {
    *format = Format::kNdjson;
    return true;
  }
  if (absl::EqualsIgnoreCase(media, "text/csv")) {
    *format = Format::kCsv;
    return true;
  }
  return false;
}

size_t RecipientReader::CompleteEnd(Format format, absl::string_view buf,
                                    size_t end, size_t* scanned,
                                    bool* in_quotes) {
  if (format == Format::kNdjson) {
    const size_t nl = buf.rfind('\n');
    *scanned = buf.size();
    return nl == absl::string_view::npos || nl + 1 < end ? end : nl + 1;
  }
  bool quoted = *in_quotes;
  for (size_t i = *scanned; i < buf.size(); ++i) {
    const char c = buf[i];
    if (c == '"') {
      quoted = !quoted;  // "" inside quotes toggles twice
    } else if (c == '\n' && !quoted) {
      end = i + 1;
    }
  }
  *scanned = buf.size();
  *in_quotes = quoted;
  return end;
}

RecipientReader::RecipientReader(Format format, absl::string_view body)
    : format_(format), body_(body) {}

void RecipientReader::SkipBlankLines() {
  // Only whole blank lines ("\n", "\r\n", spaces/tabs then a break or end).
  while (pos_ < body_.size()) {
    size_t p = pos_;
    while (p < body_.size() && (body_[p] == ' ' || body_[p] == '\t' ||
                                body_[p] == '\r')) {
      ++p;
    }
    if (p == body_.size()) {
      pos_ = p;
      return;
    }
    if (body_[p] != '\n') return;
    pos_ = p + 1;
    ++line_;
  }
}

bool RecipientReader::AtEnd() {
  if (failed_) return true;
  SkipBlankLines();
  return pos_ >= body_.size();
}

RecipientReader::Result RecipientReader::Next(storage::Recipient* rec,
                                              std::string* where,
                                              std::string* message) {
  if (failed_) {
    *message = "the reader stopped at an earlier error";
    return Result::kError;
  }
  rec->Clear();
  Result r = format_ == Format::kNdjson ? NextNdjson(rec, where, message)
                                        : NextCsv(rec, where, message);
  if (r == Result::kError) failed_ = true;
  if (r == Result::kRecord) ++records_;
  return r;
}

RecipientReader::Result RecipientReader::NextNdjson(storage::Recipient* rec,
                                                    std::string* where,
                                                    std::string* message) {
  SkipBlankLines();
  if (pos_ >= body_.size()) return Result::kEnd;
  size_t end = body_.find('\n', pos_);
  if (end == absl::string_view::npos) end = body_.size();
  const absl::string_view line = body_.substr(pos_, end - pos_);
  pos_ = end < body_.size() ? end + 1 : end;
  ++line_;
  where->assign("line ");  // reuses the caller's buffer
  absl::StrAppend(where, line_);
  if (FastLine(line).Parse(rec)) return Result::kRecord;
  rec->Clear();
  doc_.Parse(line.data(), line.size());
  if (doc_.HasParseError()) {
    *message = absl::StrCat("malformed JSON at byte ", doc_.GetErrorOffset());
    return Result::kError;
  }
  if (!doc_.IsObject()) {
    *message = "must be a JSON object";
    return Result::kError;
  }
  bool have_email = false;
  for (const auto& m : doc_.GetObject()) {
    const absl::string_view name = Str(m.name);
    if (name == "email") {
      if (!m.value.IsString() || !IsValidMailbox(Str(m.value))) {
        *message = "email: not a valid address";
        return Result::kError;
      }
      rec->set_address(m.value.GetString(), m.value.GetStringLength());
      have_email = true;
    } else if (name == "data") {
      if (!m.value.IsObject()) {
        *message = "data: must be an object of strings";
        return Result::kError;
      }
      for (const auto& d : m.value.GetObject()) {
        if (!d.value.IsString()) {
          *message = absl::StrCat("data.", Str(d.name), ": must be a string");
          return Result::kError;
        }
        storage::Field* f = rec->add_fields();
        f->set_name(d.name.GetString(), d.name.GetStringLength());
        f->set_value(d.value.GetString(), d.value.GetStringLength());
      }
    } else {
      *message = absl::StrCat(name, ": unknown field");
      return Result::kError;
    }
  }
  if (!have_email) {
    *message = "email: is required";
    return Result::kError;
  }
  return Result::kRecord;
}

bool RecipientReader::ReadCsvRecord(std::string* message) {
  fields_.clear();
  std::string field;
  bool quoted = false;      // inside a quoted field
  bool was_quoted = false;  // the current field started with a quote
  while (pos_ < body_.size()) {
    const char c = body_[pos_++];
    if (quoted) {
      if (c == '"') {
        if (pos_ < body_.size() && body_[pos_] == '"') {
          field.push_back('"');
          ++pos_;
        } else {
          quoted = false;
        }
      } else {
        field.push_back(c);
      }
      continue;
    }
    if (c == '"') {
      if (!field.empty() || was_quoted) {
        *message = "a quote inside an unquoted field (use \"...\" around it)";
        return false;
      }
      quoted = was_quoted = true;
    } else if (c == ',') {
      fields_.push_back(std::move(field));
      field.clear();
      was_quoted = false;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && pos_ < body_.size() && body_[pos_] == '\n') ++pos_;
      fields_.push_back(std::move(field));
      return true;
    } else {
      if (was_quoted) {
        *message = "text after a closing quote";
        return false;
      }
      field.push_back(c);
    }
  }
  if (quoted) {
    *message = "unterminated quoted field";
    return false;
  }
  fields_.push_back(std::move(field));
  return true;
}

RecipientReader::Result RecipientReader::NextCsv(storage::Recipient* rec,
                                                 std::string* where,
                                                 std::string* message) {
  if (!have_header_) {
    SkipBlankLines();
    if (pos_ >= body_.size()) return Result::kEnd;
    ++line_;
    *where = absl::StrCat("row ", line_);
    if (!ReadCsvRecord(message)) return Result::kError;
    header_ = fields_;
    if (header_.empty() ||
        !absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(header_[0]),
                                "email")) {
      *message = "the header row must start with \"email\"";
      return Result::kError;
    }
    for (size_t i = 1; i < header_.size(); ++i) {
      if (header_[i].empty()) {
        *message = absl::StrCat("header column ", i + 1, " has no name");
        return Result::kError;
      }
      for (size_t j = 1; j < i; ++j) {
        if (header_[j] == header_[i]) {
          *message = absl::StrCat("header column \"", header_[i],
                                  "\" appears twice");
          return Result::kError;
        }
      }
    }
    have_header_ = true;
  }
  SkipBlankLines();
  if (pos_ >= body_.size()) return Result::kEnd;
  ++line_;
  where->assign("row ");
  absl::StrAppend(where, line_);
  if (!ReadCsvRecord(message)) return Result::kError;
  if (fields_.size() != header_.size()) {
    *message = absl::StrCat("has ", fields_.size(), " fields, the header ",
                            header_.size());
    return Result::kError;
  }
  if (!IsValidMailbox(fields_[0])) {
    *message = "email: not a valid address";
    return Result::kError;
  }
  rec->set_address(fields_[0]);
  for (size_t i = 1; i < fields_.size(); ++i) {
    storage::Field* f = rec->add_fields();
    f->set_name(header_[i]);
    f->set_value(std::move(fields_[i]));
  }
  return Result::kRecord;
}

}  // namespace salvo::api
