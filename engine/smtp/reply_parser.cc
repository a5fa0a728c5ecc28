// Implementation of ReplyParser (see reply_parser.h).
#include "engine/smtp/reply_parser.h"

#include <algorithm>
#include <cstring>

namespace salvo::smtp {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Length of "x.y.z" at the start of `s` when it is a syntactically valid
// RFC 3463 code followed by a space or the end of the line, else 0.
size_t EnhancedCodeLength(absl::string_view s) {
  if (s.size() < 5) return 0;
  if (s[0] != '2' && s[0] != '4' && s[0] != '5') return 0;
  if (s[1] != '.') return 0;
  size_t i = 2;
  for (int part = 0; part < 2; ++part) {
    size_t start = i;
    while (i < s.size() && IsDigit(s[i]) && i - start < 4) ++i;
    size_t n = i - start;
    if (n == 0 || n > 3) return 0;
    if (part == 0) {
      if (i >= s.size() || s[i] != '.') return 0;
      ++i;
    }
  }
  if (i < s.size() && s[i] != ' ') return 0;
  return i;
}

}  // namespace

void ReplyParser::Reset() {
  failed_ = false;
  partial_.clear();
  text_.clear();
  enhanced_len_ = 0;
  code_ = 0;
  lines_ = 0;
  error_.clear();
}

ReplyParser::Status ReplyParser::Fail(const char* why) {
  failed_ = true;
  error_ = why;
  return Status::kError;
}

ReplyParser::Status ReplyParser::Parse(absl::string_view* in, Reply* out) {
  if (failed_) return Status::kError;
  while (!in->empty()) {
    const char* nl =
        static_cast<const char*>(std::memchr(in->data(), '\n', in->size()));
    if (nl == nullptr) {
      // +1: a CR that belongs to the line end may be waiting for its LF.
      if (partial_.size() + in->size() > kMaxLineOctets + 1) {
        return Fail("reply line too long");
      }
      partial_.append(in->data(), in->size());
      in->remove_prefix(in->size());
      return Status::kNeedMore;
    }
    size_t n = nl - in->data();
    absl::string_view line;
    if (partial_.empty()) {
      line = in->substr(0, n);
    } else {
      if (partial_.size() + n > kMaxLineOctets + 1) {
        return Fail("reply line too long");
      }
      partial_.append(in->data(), n);
      line = partial_;
    }
    in->remove_prefix(n + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    Status s = OnLine(line, out);
    partial_.clear();
    if (s != Status::kNeedMore) return s;
  }
  return Status::kNeedMore;
}

ReplyParser::Status ReplyParser::OnLine(absl::string_view line, Reply* out) {
  if (line.size() > kMaxLineOctets) return Fail("reply line too long");
  if (++lines_ > kMaxLines) return Fail("reply has too many lines");
  if (line.size() < 3 || !IsDigit(line[0]) || !IsDigit(line[1]) ||
      !IsDigit(line[2])) {
    return Fail("reply code is not numeric");
  }
  if (line[0] < '2' || line[0] > '5' || line[1] > '5') {
    return Fail("reply code out of range");
  }
  int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  bool last;
  if (line.size() == 3) {
    last = true;
  } else if (line[3] == ' ') {
    last = true;
  } else if (line[3] == '-') {
    last = false;
  } else {
    return Fail("bad separator after reply code");
  }
  absl::string_view text = line.size() > 4 ? line.substr(4) : "";
  if (lines_ == 1) {
    code_ = code;
    size_t en = EnhancedCodeLength(text);
    if (en > 0 && (esc_ || text[0] - '0' == code / 100)) {
      std::memcpy(enhanced_, text.data(), en);
      enhanced_len_ = en;
    }
  } else {
    if (code != code_) return Fail("inconsistent code in multi-line reply");
    text_.push_back('\n');
  }
  if (enhanced_len_ > 0 && text.size() >= enhanced_len_ &&
      std::memcmp(text.data(), enhanced_, enhanced_len_) == 0 &&
      (text.size() == enhanced_len_ || text[enhanced_len_] == ' ')) {
    text.remove_prefix(std::min(text.size(), enhanced_len_ + 1));
  }
  text_.append(text.data(), text.size());
  if (!last) return Status::kNeedMore;

  out->code = code_;
  out->enhanced.assign(enhanced_, enhanced_len_);
  out->text.swap(text_);
  text_.clear();
  enhanced_len_ = 0;
  code_ = 0;
  lines_ = 0;
  return Status::kReply;
}

}  // namespace salvo::smtp
