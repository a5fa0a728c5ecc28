// ReplyParser: SMTP reply bytes from a server -> complete Reply values. Pure,
// no I/O. Accepts any split of the input (byte by byte too), CRLF or bare LF
// line ends, multi-line replies ("250-..." ... "250 ..."), and RFC 3463
// enhanced status codes. Limits: a line over kMaxLineOctets (excluding the
// line end), a reply of over kMaxLines lines, a non-numeric or out-of-range
// code, or a continuation line whose code differs is a protocol error
// (Status::kError, sticky until Reset()). One instance per connection; not
// thread-safe (the owning loop thread only).
//
// Allocation: once warmed up, parsing into a reused Reply allocates nothing
// (the reply text is swapped between the parser and the caller's Reply).
#ifndef SALVO_ENGINE_SMTP_REPLY_PARSER_H_
#define SALVO_ENGINE_SMTP_REPLY_PARSER_H_

#include <string>

#include "absl/strings/string_view.h"
#include "engine/smtp/reply.h"

namespace salvo::smtp {

class ReplyParser {
 public:
  static constexpr size_t kMaxLineOctets = 2048;
  static constexpr int kMaxLines = 100;

  enum class Status {
    kNeedMore,  // all of *in consumed, no complete reply yet
    kReply,     // *out holds a complete reply; *in starts after it
    kError,     // malformed stream; see error()
  };

  // When the server advertised ENHANCEDSTATUSCODES, any valid "x.y.z" with
  // x in {2,4,5} at the start of the text is taken; otherwise only one whose
  // class x matches the first digit of the reply code.
  void set_enhanced_status_codes(bool on) { esc_ = on; }

  // Consumes bytes from the front of *in. On kReply, fills code, enhanced and
  // text of *out (stage and synthetic are left alone).
  Status Parse(absl::string_view* in, Reply* out);

  const std::string& error() const { return error_; }
  // True while part of a reply has been consumed but not yet returned.
  bool mid_reply() const { return lines_ > 0 || !partial_.empty(); }
  void Reset();

 private:
  Status OnLine(absl::string_view line, Reply* out);
  Status Fail(const char* why);

  bool esc_ = false;
  bool failed_ = false;
  std::string partial_;   // an unfinished line carried across Parse() calls
  std::string text_;      // text of the reply so far, lines joined by "\n"
  char enhanced_[12] = {};
  size_t enhanced_len_ = 0;
  int code_ = 0;
  int lines_ = 0;
  std::string error_;
};

}  // namespace salvo::smtp

#endif  // SALVO_ENGINE_SMTP_REPLY_PARSER_H_
