// libFuzzer target for smtp::ReplyParser. In: any bytes, taken as a server's
// reply stream. Each input is parsed three times: in one chunk, byte by byte,
// and in pseudo-random splits derived from the input; the three runs must
// return the same replies and end the same way (the parser accepts any
// split). Every reply must satisfy the parser's limits; an error is sticky.
// Violations abort. Built and run by tests/fuzz/run_fuzzers.sh (clang++-14);
// single-threaded.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "engine/smtp/reply.h"
#include "engine/smtp/reply_parser.h"

namespace {

using salvo::smtp::Reply;
using salvo::smtp::ReplyParser;

void Check(bool ok) {
  if (!ok) std::abort();
}

struct Outcome {
  std::vector<Reply> replies;
  bool error = false;
  bool mid_reply = false;
};

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// "x.y.z": x in {2,4,5}, y and z 1 to 3 digits.
bool ValidEnhanced(absl::string_view e) {
  if (e.size() < 5 || (e[0] != '2' && e[0] != '4' && e[0] != '5') ||
      e[1] != '.') {
    return false;
  }
  size_t dot = e.find('.', 2);
  if (dot == absl::string_view::npos) return false;
  absl::string_view y = e.substr(2, dot - 2), z = e.substr(dot + 1);
  for (absl::string_view part : {y, z}) {
    if (part.empty() || part.size() > 3) return false;
    for (char c : part) {
      if (!IsDigit(c)) return false;
    }
  }
  return true;
}

void CheckReply(const Reply& r, bool esc) {
  Check(r.code >= 200 && r.code <= 559);
  Check(r.enhanced.empty() || ValidEnhanced(r.enhanced));
  if (!r.enhanced.empty() && !esc) Check(r.enhanced[0] - '0' == r.code / 100);
  size_t lines = 1, line = 0;
  for (char c : r.text) {
    if (c == '\n') {
      ++lines;
      line = 0;
    } else {
      Check(++line <= ReplyParser::kMaxLineOctets);
    }
  }
  Check(lines <= static_cast<size_t>(ReplyParser::kMaxLines));
}

// Feeds `data` in the given chunk sizes (the last chunk takes the rest).
Outcome Run(absl::string_view data, const std::vector<size_t>& splits,
            bool esc) {
  ReplyParser parser;
  parser.set_enhanced_status_codes(esc);
  Outcome o;
  Reply reply;
  size_t k = 0;
  while (!data.empty() && !o.error) {
    size_t n = k < splits.size() ? splits[k++] : data.size();
    if (n == 0 || n > data.size()) n = data.size();
    absl::string_view chunk = data.substr(0, n);
    data.remove_prefix(n);
    while (true) {
      const size_t before = chunk.size();
      ReplyParser::Status s = parser.Parse(&chunk, &reply);
      if (s == ReplyParser::Status::kError) {
        Check(!parser.error().empty());
        // Sticky until Reset().
        absl::string_view more = "250 ok\r\n";
        Check(parser.Parse(&more, &reply) == ReplyParser::Status::kError);
        o.error = true;
        break;
      }
      if (s == ReplyParser::Status::kNeedMore) {
        Check(chunk.empty());
        break;
      }
      Check(chunk.size() < before);  // a reply consumes at least its line end
      CheckReply(reply, esc);
      o.replies.push_back(reply);
      if (chunk.empty()) break;
    }
  }
  if (!o.error) o.mid_reply = parser.mid_reply();
  // Reset() makes the parser usable again.
  parser.Reset();
  absl::string_view fresh = "250 ok\r\n";
  Check(parser.Parse(&fresh, &reply) == ReplyParser::Status::kReply &&
        reply.code == 250 && reply.text == "ok");
  return o;
}

void CheckSame(const Outcome& a, const Outcome& b) {
  Check(a.error == b.error);
  Check(a.mid_reply == b.mid_reply);
  Check(a.replies.size() == b.replies.size());
  for (size_t i = 0; i < a.replies.size(); ++i) {
    Check(a.replies[i].code == b.replies[i].code);
    Check(a.replies[i].enhanced == b.replies[i].enhanced);
    Check(a.replies[i].text == b.replies[i].text);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view in(reinterpret_cast<const char*>(data), size);
  // Split pattern and ESC mode come from a hash of the input, so the same
  // input always replays the same way.
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 16777619u;
  const bool esc = h & 1;
  std::minstd_rand rng(h | 1);
  std::vector<size_t> random_splits;
  for (size_t left = size; left > 0;) {
    size_t n = rng() % 4 == 0 ? 1 + rng() % 300 : 1 + rng() % 8;
    n = n > left ? left : n;
    random_splits.push_back(n);
    left -= n;
  }
  const std::vector<size_t> bytewise(size, 1);

  const Outcome whole = Run(in, {}, esc);
  CheckSame(whole, Run(in, bytewise, esc));
  CheckSame(whole, Run(in, random_splits, esc));
  return 0;
}
