// Routes and submission (see api.h). Validation is pure and runs on the loop
// thread over the request body parsed in situ (strings stay views into it);
// the batch is committed by the QueueStore's committer thread and the answer
// is posted back to the loop.
#include "api/api.h"

#include <openssl/sha.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "api/address.h"
#include "api/recipient_upload.h"
#include "engine/events/event_json.h"
#include "engine/hygiene/list_unsubscribe.h"
#include "engine/hygiene/unsubscribe_token.h"
#include "engine/metrics/metric_names.h"
#include "engine/render/template.h"

namespace salvo::api {
namespace {

using rapidjson::Value;
using Error = Api::Error;
using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

constexpr const char* kReservedHeaders[] = {
    "From",         "To",           "Subject",
    "Date",         "Message-ID",   "MIME-Version",
    "Content-Type", "Content-Transfer-Encoding", "Reply-To",
    "Bcc"};

absl::string_view Str(const Value& v) {
  return absl::string_view(v.GetString(), v.GetStringLength());
}

bool HasLineBreak(absl::string_view s) {
  return s.find_first_of(absl::string_view("\r\n\0", 3)) !=
         absl::string_view::npos;
}

Error Invalid(std::string field, std::string message) {
  Error e;
  e.field = std::move(field);
  e.message = std::move(message);
  return e;
}

Error TooLarge(std::string field, std::string message) {
  Error e = Invalid(std::move(field), std::move(message));
  e.status = 413;
  e.code = "too_large";
  return e;
}

absl::string_view HelpFor(absl::string_view name) {
  for (const metrics::MetricSpec& m : metrics::kEngineMetrics) {
    if (m.name == name) return m.help;
  }
  return "";
}

// A submission that passed validation; string views point into the body.
struct Submission {
  storage::Content content;
  int64_t expires_after_ms = 0;
  int64_t send_at_ms = 0;     // 0: absent
  int64_t expires_at_ms = 0;  // 0: absent (expires_after_ms applies)
  bool stream = false;
  struct Rcpt {
    absl::string_view email;
    const Value* data = nullptr;  // object of strings, or null
  };
  std::vector<Rcpt> rcpts;
};

class Validator {
 public:
  Validator(const config::Config& config, bool transactional, int64_t now_ms)
      : config_(config), transactional_(transactional), now_ms_(now_ms) {}

  // Fills *out from `root`; false with *err on the first problem.
  bool Parse(const Value& root, Submission* out, Error* err) {
    if (!root.IsObject()) {
      *err = Invalid("", "the body must be a JSON object");
      return false;
    }
    storage::Content& c = out->content;
    c.set_transactional(transactional_);
    bool have_from = false, have_subject = false, have_body = false;
    bool have_raw = false, have_rcpts = false, have_envelope = false;
    bool have_expires_in = false;
    absl::string_view from_addr;
    out->expires_after_ms = absl::ToInt64Milliseconds(config_.expiry);
    const Value* headers = nullptr;
    for (const auto& m : root.GetObject()) {
      const absl::string_view name = Str(m.name);
      const Value& v = m.value;
      if (name == "name" && !transactional_) {
        if (!String(v, "name", err)) return false;
        c.set_name(std::string(Str(v)));
      } else if (name == "from") {
        absl::string_view display;
        if (!String(v, "from", err)) return false;
        if (HasLineBreak(Str(v))) return LineBreak("from", err);
        if (!ParseNameAddr(Str(v), &display, &from_addr)) {
          *err = Invalid("from", "not a valid address (\"Name <addr>\" or addr)");
          return false;
        }
        c.set_from(std::string(absl::StripAsciiWhitespace(Str(v))));
        have_from = true;
      } else if (name == "envelope_from") {
        if (!String(v, "envelope_from", err)) return false;
        if (!IsValidMailbox(Str(v))) {
          *err = Invalid("envelope_from", "not a valid address");
          return false;
        }
        c.set_envelope_from(std::string(Str(v)));
        have_envelope = true;
      } else if (name == "reply_to") {
        absl::string_view display, addr;
        if (!String(v, "reply_to", err)) return false;
        if (HasLineBreak(Str(v))) return LineBreak("reply_to", err);
        if (!ParseNameAddr(Str(v), &display, &addr)) {
          *err = Invalid("reply_to", "not a valid address");
          return false;
        }
        c.set_reply_to(std::string(absl::StripAsciiWhitespace(Str(v))));
      } else if (name == "subject") {
        if (!String(v, "subject", err)) return false;
        if (HasLineBreak(Str(v))) return LineBreak("subject", err);
        if (!Fits(v, "subject", err)) return false;
        c.set_subject(std::string(Str(v)));
        have_subject = true;
      } else if (name == "html" || name == "text") {
        if (!String(v, name, err)) return false;
        if (!Fits(v, name, err)) return false;
        (name == "html" ? c.mutable_html() : c.mutable_text())
            ->assign(v.GetString(), v.GetStringLength());
        if (v.GetStringLength() > 0) have_body = true;
      } else if (name == "raw" && transactional_) {
        if (!String(v, "raw", err)) return false;
        if (!Fits(v, "raw", err)) return false;
        if (v.GetStringLength() == 0) {
          *err = Invalid("raw", "must not be empty");
          return false;
        }
        c.set_raw(std::string(Str(v)));
        have_raw = true;
      } else if (name == "headers") {
        headers = &v;
        if (!Headers(v, &c, err)) return false;
      } else if (name == "tags" && !transactional_) {
        if (!Tags(v, &c, err)) return false;
      } else if (name == "expires_in") {
        if (!String(v, "expires_in", err)) return false;
        absl::Duration d;
        if (!absl::ParseDuration(std::string(Str(v)), &d) ||
            d <= absl::ZeroDuration()) {
          *err = Invalid("expires_in",
                         "must be a positive duration such as \"72h\"");
          return false;
        }
        if (out->expires_at_ms != 0) return Exclusive2("expires_in", err);
        out->expires_after_ms = absl::ToInt64Milliseconds(d);
        have_expires_in = true;
      } else if (name == "expires_at") {
        if (have_expires_in) return Exclusive2("expires_at", err);
        if (!Timestamp(v, "expires_at", &out->expires_at_ms, err)) return false;
      } else if (name == "send_at") {
        if (!Timestamp(v, "send_at", &out->send_at_ms, err)) return false;
      } else if (name == "stream" && !transactional_) {
        if (!v.IsBool()) {
          *err = Invalid("stream", "must be true or false");
          return false;
        }
        out->stream = v.GetBool();
      } else if (name == "recipients") {
        if (have_rcpts) return Exclusive("recipients", err);
        if (!Recipients(v, out, err)) return false;
        have_rcpts = true;
      } else if (name == "to" && transactional_) {
        if (have_rcpts) return Exclusive("to", err);
        if (!To(v, out, err)) return false;
        have_rcpts = true;
      } else {
        *err = Invalid(std::string(name), "unknown field");
        return false;
      }
    }
    if (!have_from) return Missing("from", err);
    if (!have_envelope) c.set_envelope_from(std::string(from_addr));
    if (have_raw) {
      if (have_subject || have_body || headers != nullptr) {
        *err = Invalid("raw",
                       "raw excludes subject, html, text and headers");
        return false;
      }
    } else {
      if (!have_subject) return Missing("subject", err);
      if (!have_body) {
        *err = Invalid("html", "html or text is required");
        return false;
      }
      if (c.html().size() + c.text().size() >
          static_cast<size_t>(config_.max_message_bytes)) {
        *err = TooLarge("html", "html and text together exceed the message size limit");
        return false;
      }
    }
    if (c.headers_size() > 0 && !c.reply_to().empty()) {
      for (const auto& h : c.headers()) {
        if (absl::EqualsIgnoreCase(h.name(), "Reply-To")) {
          *err = Invalid("headers.Reply-To", "use reply_to");
          return false;
        }
      }
    }
    if (out->expires_at_ms != 0) {
      const int64_t start = std::max(now_ms_, out->send_at_ms);
      if (out->expires_at_ms <= start) {
        *err = Invalid("expires_at", out->send_at_ms > now_ms_
                                         ? "must be after send_at"
                                         : "must be in the future");
        return false;
      }
    }
    if (out->stream) {
      if (!out->rcpts.empty()) {
        *err = Invalid("recipients",
                       "a stream campaign gets its recipients from "
                       "POST /v1/campaigns/{id}/recipients");
        return false;
      }
      return true;
    }
    if (!have_rcpts || out->rcpts.empty()) {
      if (have_rcpts) {
        *err = Invalid("recipients", "must be a non-empty array");
        return false;
      }
      return Missing(transactional_ ? "to" : "recipients", err);
    }
    if (transactional_ && out->rcpts.size() > static_cast<size_t>(
                              config_.max_recipients_per_message)) {
      *err = Invalid(root.HasMember("to") ? "to" : "recipients",
                     absl::StrCat("more than ",
                                  config_.max_recipients_per_message,
                                  " recipients"));
      return false;
    }
    return true;
  }

 private:
  bool String(const Value& v, absl::string_view field, Error* err) {
    if (v.IsString()) return true;
    *err = Invalid(std::string(field), "must be a string");
    return false;
  }
  bool Fits(const Value& v, absl::string_view field, Error* err) {
    if (v.GetStringLength() <= static_cast<size_t>(config_.max_message_bytes)) {
      return true;
    }
    *err = TooLarge(std::string(field), "exceeds the message size limit");
    return false;
  }
  static bool LineBreak(absl::string_view field, Error* err) {
    *err = Invalid(std::string(field), "must not contain CR, LF or NUL");
    return false;
  }
  static bool Missing(absl::string_view field, Error* err) {
    *err = Invalid(std::string(field), "is required");
    return false;
  }
  static bool Exclusive(absl::string_view field, Error* err) {
    *err = Invalid(std::string(field), "give either to or recipients");
    return false;
  }
  static bool Exclusive2(absl::string_view field, Error* err) {
    *err = Invalid(std::string(field), "give either expires_in or expires_at");
    return false;
  }
  // An RFC 3339 timestamp ("2026-11-24T09:00:00Z") -> ms since the epoch.
  bool Timestamp(const Value& v, absl::string_view field, int64_t* ms,
                 Error* err) {
    absl::Time t;
    std::string parse_err;
    if (!v.IsString() ||
        !absl::ParseTime(absl::RFC3339_full, std::string(Str(v)), &t,
                         &parse_err) ||
        absl::ToUnixMillis(t) <= 0) {
      *err = Invalid(std::string(field),
                     "must be an RFC 3339 timestamp such as "
                     "\"2026-11-24T09:00:00Z\"");
      return false;
    }
    *ms = absl::ToUnixMillis(t);
    return true;
  }

  bool Headers(const Value& v, storage::Content* c, Error* err) {
    if (!v.IsObject()) {
      *err = Invalid("headers", "must be an object of name: value");
      return false;
    }
    for (const auto& m : v.GetObject()) {
      const absl::string_view name = Str(m.name);
      std::string field = absl::StrCat("headers.", name);
      if (!IsValidHeaderName(name)) {
        *err = Invalid(field, "not an RFC 5322 header field name");
        return false;
      }
      for (const char* reserved : kReservedHeaders) {
        if (absl::EqualsIgnoreCase(name, reserved)) {
          *err = Invalid(field, "this header is set by Salvo");
          return false;
        }
      }
      if (!String(m.value, field, err)) return false;
      if (HasLineBreak(Str(m.value))) return LineBreak(field, err);
      storage::Header* h = c->add_headers();
      h->set_name(std::string(name));
      h->set_value(std::string(Str(m.value)));
    }
    return true;
  }

  bool Tags(const Value& v, storage::Content* c, Error* err) {
    if (!v.IsArray()) {
      *err = Invalid("tags", "must be an array of strings");
      return false;
    }
    for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
      if (!String(v[i], absl::StrCat("tags[", i, "]"), err)) return false;
      c->add_tags(std::string(Str(v[i])));
    }
    return true;
  }

  bool To(const Value& v, Submission* out, Error* err) {
    if (!v.IsArray() || v.Empty()) {
      *err = Invalid("to", "must be a non-empty array of addresses");
      return false;
    }
    out->rcpts.reserve(v.Size());
    for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
      if (!v[i].IsString() || !IsValidMailbox(Str(v[i]))) {
        *err = Invalid(absl::StrCat("to[", i, "]"), "not a valid address");
        return false;
      }
      out->rcpts.push_back({Str(v[i]), nullptr});
    }
    return true;
  }

  // An empty array passes here; Parse() rejects it unless "stream".
  bool Recipients(const Value& v, Submission* out, Error* err) {
    if (!v.IsArray()) {
      *err = Invalid("recipients", "must be a non-empty array");
      return false;
    }
    out->rcpts.reserve(v.Size());
    for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
      const Value& r = v[i];
      if (!r.IsObject()) {
        *err = Invalid(absl::StrCat("recipients[", i, "]"),
                       "must be an object");
        return false;
      }
      Submission::Rcpt rcpt;
      bool have_email = false;
      for (const auto& m : r.GetObject()) {
        const absl::string_view name = Str(m.name);
        if (name == "email") {
          if (!m.value.IsString() || !IsValidMailbox(Str(m.value))) {
            *err = Invalid(absl::StrCat("recipients[", i, "].email"),
                           "not a valid address");
            return false;
          }
          rcpt.email = Str(m.value);
          have_email = true;
        } else if (name == "data") {
          if (!m.value.IsObject()) {
            *err = Invalid(absl::StrCat("recipients[", i, "].data"),
                           "must be an object of strings");
            return false;
          }
          for (const auto& d : m.value.GetObject()) {
            if (!d.value.IsString()) {
              *err = Invalid(
                  absl::StrCat("recipients[", i, "].data.", Str(d.name)),
                  "must be a string");
              return false;
            }
          }
          rcpt.data = &m.value;
        } else {
          *err = Invalid(absl::StrCat("recipients[", i, "].", name),
                         "unknown field");
          return false;
        }
      }
      if (!have_email) {
        *err = Invalid(absl::StrCat("recipients[", i, "].email"), "is required");
        return false;
      }
      out->rcpts.push_back(rcpt);
    }
    return true;
  }

  const config::Config& config_;
  const bool transactional_;
  const int64_t now_ms_;
};

// Every merge field the templates use is present; those used in headers hold
// no line breaks.
bool CheckMergeData(const render::CompiledContent& compiled,
                    const Submission& sub, Error* err) {
  const std::vector<std::string>& fields = compiled.fields();
  if (fields.empty()) return true;
  std::vector<bool> in_header(fields.size());
  for (size_t f = 0; f < fields.size(); ++f) {
    const auto& hf = compiled.header_fields();
    in_header[f] = std::binary_search(hf.begin(), hf.end(), fields[f]);
  }
  for (size_t i = 0; i < sub.rcpts.size(); ++i) {
    const Value* data = sub.rcpts[i].data;
    for (size_t f = 0; f < fields.size(); ++f) {
      const Value* value = nullptr;
      if (data != nullptr) {
        for (const auto& m : data->GetObject()) {
          if (Str(m.name) == fields[f]) {
            value = &m.value;
            break;
          }
        }
      }
      if (value == nullptr) {
        *err = Invalid(absl::StrCat("recipients[", i, "].data.", fields[f]),
                       "missing: the templates use this field");
        return false;
      }
      if (in_header[f] && HasLineBreak(Str(*value))) {
        *err = Invalid(absl::StrCat("recipients[", i, "].data.", fields[f]),
                       "used in a header: must not contain CR, LF or NUL");
        return false;
      }
    }
  }
  return true;
}

HttpResponse Json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

// ------------------------------------------------- suppressions, unsubscribe

constexpr absl::string_view kSuppressionsPrefix = "/v1/suppressions/";
constexpr absl::string_view kRecipientsSuffix = "/recipients";
constexpr absl::string_view kRescheduleSuffix = "/reschedule";

// The id of /v1/campaigns/{id}/reschedule or /v1/messages/{id}/reschedule;
// empty for any other path.
absl::string_view RescheduleId(absl::string_view path) {
  if (!absl::ConsumeSuffix(&path, kRescheduleSuffix)) return {};
  if (!absl::ConsumePrefix(&path, "/v1/campaigns/") &&
      !absl::ConsumePrefix(&path, "/v1/messages/")) {
    return {};
  }
  if (path.find('/') != absl::string_view::npos) return {};
  return path;
}

constexpr absl::string_view kIdempotencyHeader = "Idempotency-Key";

// SHA-256 over method, path and body (NUL-separated): what a replay must
// match.
std::string RequestHash(const HttpRequest& req) {
  SHA256_CTX ctx;
  SHA256_Init(&ctx);
  SHA256_Update(&ctx, req.method.data(), req.method.size());
  SHA256_Update(&ctx, "", 1);
  SHA256_Update(&ctx, req.path.data(), req.path.size());
  SHA256_Update(&ctx, "", 1);
  SHA256_Update(&ctx, req.body.data(), req.body.size());
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256_Final(md, &ctx);
  return std::string(reinterpret_cast<const char*>(md), sizeof(md));
}
constexpr size_t kMaxSuppressionEntries = 10000;
constexpr int kDefaultListLimit = 100;

// "GET, POST" allows "GET" and "POST".
bool MethodAllowed(absl::string_view allowed, absl::string_view method) {
  while (!allowed.empty()) {
    const size_t comma = allowed.find(", ");
    if (allowed.substr(0, comma) == method) return true;
    if (comma == absl::string_view::npos) break;
    allowed.remove_prefix(comma + 2);
  }
  return false;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding (and '+' as space when `plus_is_space`, for queries).
// false on a malformed escape.
bool PercentDecode(absl::string_view in, bool plus_is_space, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = HexDigit(in[i + 1]);
      const int lo = HexDigit(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return true;
}

// The decoded value of `name` in an application/x-www-form-urlencoded query.
bool QueryParam(absl::string_view query, absl::string_view name,
                std::string* value) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const absl::string_view pair = query.substr(0, amp);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      return PercentDecode(
          eq == absl::string_view::npos ? "" : pair.substr(eq + 1),
          /*plus_is_space=*/true, value);
    }
    if (amp == absl::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  value->clear();
  return true;
}

// A suppression entry as the API accepts it: a valid mailbox, or a domain
// ("@example.com" or "example.com").
bool IsValidSuppressionEntry(absl::string_view entry) {
  const size_t at = entry.find('@');
  if (at == absl::string_view::npos || at == 0) {
    const absl::string_view domain =
        at == 0 ? entry.substr(1) : entry;
    return !domain.empty() && IsValidMailbox(absl::StrCat("x@", domain));
  }
  return IsValidMailbox(entry);
}

std::string HtmlEscape(absl::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

HttpResponse Html(int status, absl::string_view title, absl::string_view body) {
  HttpResponse r;
  r.status = status;
  r.content_type = "text/html; charset=utf-8";
  r.body = absl::StrCat(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>", title,
      "</title></head>\n<body>", body, "</body></html>\n");
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

Error Unavailable(const absl::Status& s) {
  Error e;
  e.status = 503;
  e.code = "unavailable";
  e.message = absl::StrCat("storage: ", s.message());
  return e;
}

Error NotFound(std::string field, std::string message) {
  Error e = Invalid(std::move(field), std::move(message));
  e.status = 404;
  e.code = "not_found";
  return e;
}

std::string FormatMillis(int64_t ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(ms),
                          absl::UTCTimeZone());
}

// A reschedule body {"send_at", "expires_at" | "expires_in"} (all optional;
// an empty body is {}) against the stored `content`: fills *updated (the
// Content record with the new schedule) and *r (the moves). False with *err.
bool ParseReschedule(absl::string_view body, int64_t now_ms,
                     const storage::Content& content,
                     storage::Content* updated, storage::Reschedule* r,
                     Error* err) {
  rapidjson::Document doc;
  if (!absl::StripAsciiWhitespace(body).empty()) {
    doc.Parse(body.data(), body.size());
  } else {
    doc.SetObject();
  }
  if (doc.HasParseError() || !doc.IsObject()) {
    *err = Invalid("", "the body must be a JSON object");
    return false;
  }
  auto timestamp = [err](const Value& v, const char* field, int64_t* ms) {
    absl::Time t;
    std::string parse_err;
    if (!v.IsString() ||
        !absl::ParseTime(absl::RFC3339_full, std::string(Str(v)), &t,
                         &parse_err) ||
        absl::ToUnixMillis(t) <= 0) {
      *err = Invalid(field,
                     "must be an RFC 3339 timestamp such as "
                     "\"2026-11-24T09:00:00Z\"");
      return false;
    }
    *ms = absl::ToUnixMillis(t);
    return true;
  };
  int64_t send_at_ms = 0, expires_at_ms = 0, expires_after_ms = 0;
  for (const auto& m : doc.GetObject()) {
    const absl::string_view name = Str(m.name);
    const Value& v = m.value;
    if (name == "send_at") {
      if (!timestamp(v, "send_at", &send_at_ms)) return false;
    } else if (name == "expires_at") {
      if (!timestamp(v, "expires_at", &expires_at_ms)) return false;
    } else if (name == "expires_in") {
      absl::Duration d;
      if (!v.IsString() || !absl::ParseDuration(std::string(Str(v)), &d) ||
          d <= absl::ZeroDuration()) {
        *err = Invalid("expires_in",
                       "must be a positive duration such as \"72h\"");
        return false;
      }
      expires_after_ms = absl::ToInt64Milliseconds(d);
    } else {
      *err = Invalid(std::string(name), "unknown field");
      return false;
    }
  }
  if (expires_at_ms != 0 && expires_after_ms != 0) {
    *err = Invalid("expires_in", "give either expires_in or expires_at");
    return false;
  }
  const int64_t due = std::max(now_ms, send_at_ms);
  *updated = content;
  updated->set_send_at_ms(send_at_ms);
  if (expires_at_ms != 0) {
    if (expires_at_ms <= due) {
      *err = Invalid("expires_at", send_at_ms > now_ms
                                       ? "must be after send_at"
                                       : "must be in the future");
      return false;
    }
    updated->set_expires_at_ms(expires_at_ms);
  } else if (expires_after_ms != 0) {
    updated->set_expires_at_ms(0);
    updated->set_expires_after_ms(expires_after_ms);
  } else if (content.expires_at_ms() != 0 && content.expires_at_ms() <= due) {
    *err = Invalid("send_at",
                   absl::StrCat("is not before the expires_at of the campaign (",
                                FormatMillis(content.expires_at_ms()),
                                "); give expires_at or expires_in"));
    return false;
  }
  r->due_ms = due;
  r->expires_at_ms = updated->expires_at_ms();
  r->expires_after_ms =
      r->expires_at_ms != 0 ? 0 : updated->expires_after_ms();
  return true;
}

}  // namespace

HttpResponse Api::ErrorResponse(const Error& e) {
  rapidjson::StringBuffer sb;
  JsonWriter w(sb);
  w.StartObject();
  w.Key("error");
  w.StartObject();
  w.Key("code");
  w.String(e.code);
  if (!e.field.empty()) {
    w.Key("field");
    w.String(e.field.data(), e.field.size());
  }
  w.Key("message");
  w.String(e.message.data(), e.message.size());
  w.EndObject();
  w.EndObject();
  return Json(e.status, std::string(sb.GetString(), sb.GetSize()));
}

Api::Api(const config::Config& config, storage::QueueStore* store,
         DeliveryHooks* hooks, metrics::Registry* registry,
         const core::Clock& clock)
    : config_(config),
      store_(store),
      hooks_(hooks),
      registry_(registry),
      clock_(clock),
      suppressions_(std::make_unique<storage::SuppressionStore>(store)),
      idempotency_(std::make_unique<storage::IdempotencyStore>(store)) {}

Api::~Api() = default;

const std::string* Api::Authenticate(const HttpRequest& req) const {
  absl::string_view key;
  if (const std::string* auth = req.Header("authorization")) {
    absl::string_view a = absl::StripAsciiWhitespace(*auth);
    if (a.size() > 7 && absl::StartsWithIgnoreCase(a, "bearer ")) {
      key = absl::StripAsciiWhitespace(a.substr(7));
    }
  }
  if (key.empty()) {
    if (const std::string* k = req.Header("x-api-key")) {
      key = absl::StripAsciiWhitespace(*k);
    }
  }
  if (key.empty()) return nullptr;
  auto it = config_.api_keys.find(key);
  return it == config_.api_keys.end() ? nullptr : &it->second;
}

void Api::Handle(core::Loop& loop, HttpRequest&& req, Responder respond) {
  // Route pattern for the metric label.
  absl::string_view route = "other";
  absl::string_view allowed;
  const absl::string_view path = req.path;
  if (path == "/healthz") {
    route = "/healthz";
    allowed = "GET";
  } else if (path == "/metrics") {
    route = "/metrics";
    allowed = "GET";
  } else if (path == "/v1/campaigns") {
    route = "/v1/campaigns";
    allowed = "POST";
  } else if (path == "/v1/messages") {
    route = "/v1/messages";
    allowed = "POST";
  } else if (absl::StartsWith(path, "/v1/campaigns/") &&
             path.size() > 14 &&
             path.find('/', 14) == absl::string_view::npos) {
    route = "/v1/campaigns/{id}";
    allowed = "GET";
  } else if (absl::StartsWith(path, "/v1/campaigns/") &&
             absl::EndsWith(path, kRecipientsSuffix) &&
             path.size() > 14 + kRecipientsSuffix.size() &&
             path.find('/', 14) == path.size() - kRecipientsSuffix.size()) {
    route = "/v1/campaigns/{id}/recipients";
    allowed = "POST";
  } else if (!RescheduleId(path).empty()) {
    route = absl::StartsWith(path, "/v1/campaigns/")
                ? "/v1/campaigns/{id}/reschedule"
                : "/v1/messages/{id}/reschedule";
    allowed = "POST";
  } else if (absl::StartsWith(path, "/v1/campaigns/") &&
             (absl::EndsWith(path, "/pause") ||
              absl::EndsWith(path, "/resume") ||
              absl::EndsWith(path, "/cancel")) &&
             path.find('/', 14) == path.rfind('/') && path.rfind('/') > 14) {
    route = "/v1/campaigns/{id}/{action}";
    allowed = "POST";
  } else if (path == "/v1/events") {
    route = "/v1/events";
    allowed = "GET";
  } else if (path == "/v1/suppressions") {
    route = "/v1/suppressions";
    allowed = "GET, POST";
  } else if (absl::StartsWith(path, kSuppressionsPrefix) &&
             path.size() > kSuppressionsPrefix.size() &&
             path.find('/', kSuppressionsPrefix.size()) ==
                 absl::string_view::npos) {
    route = "/v1/suppressions/{entry}";
    allowed = "DELETE";
  } else if (absl::StartsWith(path, hygiene::kUnsubscribePath) &&
             path.size() > hygiene::kUnsubscribePath.size() &&
             path.find('/', hygiene::kUnsubscribePath.size()) ==
                 absl::string_view::npos) {
    route = "/v1/unsubscribe/{token}";
    allowed = "GET, POST";
  }
  metrics::Registry* registry = registry_;
  std::string route_label(route);
  Responder counted = [registry, route_label,
                       respond = std::move(respond)](HttpResponse r) {
    if (registry != nullptr) {
      registry
          ->GetCounter(metrics::kHttpRequestsTotal,
                       HelpFor(metrics::kHttpRequestsTotal),
                       {{"route", route_label}, {"code", absl::StrCat(r.status)}})
          ->Inc();
    }
    respond(std::move(r));
  };

  Error e;
  if (route == "other") {
    e.status = 404;
    e.code = "not_found";
    e.message = "no such route";
    counted(ErrorResponse(e));
    return;
  }
  const std::string* tenant = nullptr;
  // The one-click endpoint is reached by mail clients: the token is the
  // credential.
  if (route != "/healthz" && route != "/metrics" &&
      route != "/v1/unsubscribe/{token}") {
    tenant = Authenticate(req);
    if (tenant == nullptr) {
      e.status = 401;
      e.code = "unauthenticated";
      e.message = "missing or unknown API key (Authorization: Bearer KEY)";
      HttpResponse r = ErrorResponse(e);
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      counted(std::move(r));
      return;
    }
  }
  if (!MethodAllowed(allowed, req.method)) {
    e.status = 405;
    e.code = "method_not_allowed";
    e.message = absl::StrCat("use ", allowed);
    HttpResponse r = ErrorResponse(e);
    r.headers.emplace_back("Allow", std::string(allowed));
    counted(std::move(r));
    return;
  }
  if (route == "/healthz") {
    counted(Json(200, "{\"status\":\"ok\"}"));
  } else if (route == "/metrics") {
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    if (registry_ != nullptr) r.body = registry_->Expose();
    counted(std::move(r));
  } else if (route == "/v1/campaigns/{id}") {
    counted(GetStatus(path.substr(14), *tenant));
  } else if (route == "/v1/events") {
    counted(ListEvents(req, *tenant));
  } else if (route == "/v1/suppressions") {
    if (req.method == "GET") {
      counted(ListSuppressions(req, *tenant));
    } else {
      AddSuppressions(loop, req, *tenant, std::move(counted));
    }
  } else if (route == "/v1/campaigns/{id}/reschedule" ||
             route == "/v1/messages/{id}/reschedule") {
    Reschedule(loop, req, RescheduleId(path),
               route == "/v1/messages/{id}/reschedule", *tenant,
               std::move(counted));
  } else if (route == "/v1/campaigns/{id}/{action}") {
    const size_t slash = path.rfind('/');
    Control(loop, path.substr(14, slash - 14), path.substr(slash + 1),
            *tenant, std::move(counted));
  } else if (route == "/v1/suppressions/{entry}") {
    RemoveSuppression(loop, path.substr(kSuppressionsPrefix.size()), *tenant,
                      std::move(counted));
  } else if (route == "/v1/unsubscribe/{token}") {
    Unsubscribe(loop, req, path.substr(hygiene::kUnsubscribePath.size()),
                std::move(counted));
  } else {
    std::optional<IdemClaim> claim;
    if (CheckIdempotency(req, *tenant, &claim, &counted)) return;
    if (route == "/v1/campaigns/{id}/recipients") {
      const std::string hex_id(path.substr(
          14, path.size() - 14 - kRecipientsSuffix.size()));
      Upload(loop, std::move(req), *tenant, hex_id, std::move(claim),
             std::move(counted));
    } else {
      Submit(loop, std::move(req), *tenant, route == "/v1/messages", claim,
             std::move(counted));
    }
  }
}

bool Api::CheckIdempotency(const HttpRequest& req, const std::string& tenant,
                           std::optional<IdemClaim>* claim,
                           Responder* respond) {
  const std::string* header = req.Header("idempotency-key");
  if (header == nullptr) return false;
  const absl::string_view key = absl::StripAsciiWhitespace(*header);
  if (absl::Status s = storage::IdempotencyStore::CheckKey(tenant, key);
      !s.ok()) {
    (*respond)(ErrorResponse(
        Invalid(std::string(kIdempotencyHeader), std::string(s.message()))));
    return true;
  }
  // Claim first, then look up: a duplicate that arrives after the original
  // released its claim finds the original's durable record.
  std::string claim_id = absl::StrCat(tenant, absl::string_view("\0", 1), key);
  {
    absl::MutexLock l(&claims_mu_);
    if (!claims_.insert(claim_id).second) {
      Error e = Invalid(std::string(kIdempotencyHeader),
                        "a request with this key is in progress; retry later");
      e.status = 409;
      e.code = "in_progress";
      (*respond)(ErrorResponse(e));
      return true;
    }
  }
  Responder release = [this, claim_id,
                       inner = std::move(*respond)](HttpResponse r) {
    {
      absl::MutexLock l(&claims_mu_);
      claims_.erase(claim_id);
    }
    inner(std::move(r));
  };
  *respond = std::move(release);
  std::string hash = RequestHash(req);
  absl::StatusOr<std::optional<storage::IdempotencyRecord>> rec =
      idempotency_->Get(tenant, key, clock_.NowMillis(), kIdempotencyWindowMs);
  if (!rec.ok()) {
    (*respond)(ErrorResponse(Unavailable(rec.status())));
    return true;
  }
  if (rec->has_value()) {
    const storage::IdempotencyRecord& r = **rec;
    if (r.body_hash != hash) {
      Error e = Invalid(std::string(kIdempotencyHeader),
                        "this key was used with a different request "
                        "(method, path or body)");
      e.status = 422;
      e.code = "idempotency_key_reused";
      (*respond)(ErrorResponse(e));
      return true;
    }
    HttpResponse replay = Json(r.status, r.response);
    replay.headers.emplace_back("Idempotent-Replayed", "true");
    (*respond)(std::move(replay));
    return true;
  }
  *claim = IdemClaim{std::string(key), std::move(hash)};
  return false;
}

void Api::Submit(core::Loop& loop, HttpRequest&& req, const std::string& tenant,
                 bool transactional, const std::optional<IdemClaim>& idem,
                 Responder respond) {
  if (req.body.size() > static_cast<size_t>(config_.max_request_bytes)) {
    respond(ErrorResponse(TooLarge("", "request body too large")));
    return;
  }
  rapidjson::Document doc;
  // In situ: strings become views into req.body, which lives until the end
  // of this function (the batch copies what it keeps).
  doc.ParseInsitu(req.body.data());
  if (doc.HasParseError()) {
    respond(ErrorResponse(Invalid(
        "", absl::StrCat("malformed JSON at byte ", doc.GetErrorOffset(), ": ",
                         rapidjson::GetParseError_En(doc.GetParseError())))));
    return;
  }
  Submission sub;
  Error err;
  const int64_t now = clock_.NowMillis();
  Validator validator(config_, transactional, now);
  if (!validator.Parse(doc, &sub, &err)) {
    respond(ErrorResponse(err));
    return;
  }
  storage::Content& content = sub.content;
  content.set_send_at_ms(sub.send_at_ms);
  content.set_expires_at_ms(sub.expires_at_ms);
  content.set_stream(sub.stream);
  const int64_t due = std::max(now, sub.send_at_ms);
  content.set_id(store_->NextId());
  content.set_tenant(tenant);
  content.set_created_ms(now);
  content.set_expires_after_ms(sub.expires_after_ms);
  auto compiled = render::CompiledContent::Compile(content);
  if (!compiled.ok()) {
    absl::string_view msg = compiled.status().message();
    size_t colon = msg.find(": ");
    respond(ErrorResponse(Invalid(
        std::string(colon == absl::string_view::npos ? "" : msg.substr(0, colon)),
        std::string(colon == absl::string_view::npos ? msg
                                                     : msg.substr(colon + 2)))));
    return;
  }
  if (!CheckMergeData(**compiled, sub, &err)) {
    respond(ErrorResponse(err));
    return;
  }
  // Suppressed recipients are reported, not queued. `hits` is in recipient
  // order.
  std::vector<std::pair<size_t, std::string>> hits;
  {
    std::vector<absl::string_view> emails;
    emails.reserve(sub.rcpts.size());
    for (const Submission::Rcpt& r : sub.rcpts) emails.push_back(r.email);
    if (absl::Status s = suppressions_->CheckMany(tenant, emails, &hits);
        !s.ok()) {
      respond(ErrorResponse(Unavailable(s)));
      return;
    }
  }
  std::string suppressed_json;
  if (!hits.empty()) {
    rapidjson::StringBuffer sb;
    JsonWriter w(sb);
    w.StartArray();
    for (const auto& [index, entry] : hits) {
      const absl::string_view email = sub.rcpts[index].email;
      w.StartObject();
      w.Key("email");
      w.String(email.data(), static_cast<rapidjson::SizeType>(email.size()));
      w.Key("entry");
      w.String(entry.data(), static_cast<rapidjson::SizeType>(entry.size()));
      w.EndObject();
    }
    w.EndArray();
    suppressed_json = absl::StrCat(",\"suppressed\":",
                                   absl::string_view(sb.GetString(), sb.GetSize()));
  }

  // Everything is valid: build the one batch.
  // Bulk mail goes to the tenant's bucket (fair sharing between tenants).
  const storage::Lane lane = transactional ? storage::Lane::kTransactional
                                           : storage::BulkLaneFor(tenant);
  storage::StateBatch batch;
  batch.set_collect_events(event_log_ != nullptr);
  batch.PutContent(content);
  std::vector<bool> shard_used(store_->num_shards());
  const bool list_recipients =
      transactional || sub.rcpts.size() <= kMaxListedRecipients;
  std::string recipients_json;
  if (list_recipients) recipients_json = ",\"recipients\":[";
  storage::Recipient rec;
  storage::QueueKey key;
  key.lane = lane;
  key.due_ms = due;
  const int64_t expires_ms = sub.expires_at_ms != 0
                                 ? sub.expires_at_ms
                                 : due + sub.expires_after_ms;
  size_t next_hit = 0;
  // Every id of this batch is above it (DeliveryHooks::OnEnqueued).
  const uint64_t after_id = store_->NextId();
  for (size_t i = 0; i < sub.rcpts.size(); ++i) {
    if (next_hit < hits.size() && hits[next_hit].first == i) {
      batch.SuppressedAtAccept(
          content.id(), store_->NextId(), sub.rcpts[i].email, now,
          absl::StrCat("suppressed at accept (", hits[next_hit].second, ")"));
      ++next_hit;
      continue;
    }
    const Submission::Rcpt& r = sub.rcpts[i];
    rec.Clear();
    rec.set_content_id(content.id());
    rec.set_address(r.email.data(), r.email.size());
    if (r.data != nullptr) {
      for (const auto& m : r.data->GetObject()) {
        storage::Field* f = rec.add_fields();
        f->set_name(m.name.GetString(), m.name.GetStringLength());
        f->set_value(m.value.GetString(), m.value.GetStringLength());
      }
    }
    rec.set_accepted_ms(now);
    rec.set_expires_ms(expires_ms);
    key.shard = store_->ShardForDomain(DomainOf(r.email));
    key.id = store_->NextId();
    shard_used[key.shard] = true;
    batch.Enqueue(key, rec);
    if (list_recipients) {
      if (recipients_json.back() != '[') recipients_json.push_back(',');
      rapidjson::StringBuffer sb;
      JsonWriter w(sb);
      w.String(r.email.data(), static_cast<rapidjson::SizeType>(r.email.size()));
      absl::StrAppend(&recipients_json, "{\"email\":",
                      absl::string_view(sb.GetString(), sb.GetSize()),
                      ",\"id\":\"");
      storage::AppendIdHex(key.id, &recipients_json);
      recipients_json.append("\"}");
    }
  }
  if (list_recipients) recipients_json.push_back(']');
  std::vector<uint16_t> shards;
  for (size_t s = 0; s < shard_used.size(); ++s) {
    if (shard_used[s]) shards.push_back(static_cast<uint16_t>(s));
  }
  const int64_t accepted =
      static_cast<int64_t>(sub.rcpts.size() - hits.size());
  metrics::Counter* accepted_counter = nullptr;
  if (registry_ != nullptr) {
    accepted_counter = registry_->GetCounter(
        metrics::kMessagesAcceptedTotal,
        HelpFor(metrics::kMessagesAcceptedTotal),
        {{"tenant", tenant},
         {"lane", transactional ? "transactional" : "bulk"}});
  }
  DeliveryHooks* hooks = hooks_;
  const uint64_t id = content.id();
  core::Loop* loop_ptr = &loop;
  std::string response =
      absl::StrCat("{\"id\":\"", storage::IdToHex(id), "\",\"accepted\":",
                   accepted, suppressed_json, recipients_json, "}");
  if (idem.has_value()) {
    storage::IdempotencyStore::Put(
        tenant, idem->key, {idem->hash, 201, response, now}, &batch);
  }
  auto events = std::make_shared<std::vector<storage::StateBatch::BatchEvent>>(
      batch.TakeEvents());
  store_->Commit(
      std::move(batch), /*durable=*/true,
      [loop_ptr, respond = std::move(respond), shards = std::move(shards),
       hooks, accepted_counter, lane, due, after_id, accepted,
       response = std::move(response), event_log = event_log_, events,
       tenant](absl::Status s) {
        // Committer thread.
        if (!s.ok()) {
          Error e;
          e.status = 503;
          e.code = "unavailable";
          e.message = absl::StrCat("storage: ", s.message());
          loop_ptr->Post([respond, e] { respond(ErrorResponse(e)); });
          return;
        }
        if (accepted_counter != nullptr) accepted_counter->Inc(accepted);
        if (event_log != nullptr) event_log->Append(tenant, std::move(*events));
        loop_ptr->Post([respond, response] { respond(Json(201, response)); });
        if (hooks != nullptr) {
          for (uint16_t shard : shards) {
            hooks->OnEnqueued(shard, lane, due, after_id);
          }
        }
      });
}

// ------------------------------------------------------------------ uploads

// One recipients upload in progress. Lives in a shared_ptr held by whichever
// of the loop (UploadStep) and the committer (a chunk's callback) has it.
struct Api::UploadJob {
  core::Loop* loop = nullptr;
  Responder respond;
  std::string tenant;
  std::optional<IdemClaim> idem;
  std::string body;  // the reader's views point here
  RecipientReader::Format format = RecipientReader::Format::kNdjson;
  std::unique_ptr<RecipientReader> reader;
  storage::Content content;
  std::shared_ptr<const render::CompiledContent> compiled;
  std::vector<bool> in_header;  // per compiled->fields()
  int64_t now = 0;
  int64_t due = 0;
  int64_t expires_ms = 0;
  metrics::Counter* accepted_counter = nullptr;
  // Committed so far (written by a commit callback before it posts the next
  // step, read by that step).
  int64_t chunks = 0;
  int64_t accepted = 0;
  int64_t suppressed = 0;
  // Reused across chunks.
  std::vector<storage::Recipient> recs;
  std::vector<const storage::Recipient*> block_recs;  // reused per chunk
  std::vector<absl::string_view> emails;
  std::vector<std::pair<size_t, std::string>> hits;
};

void Api::Upload(core::Loop& loop, HttpRequest&& req, const std::string& tenant,
                 absl::string_view hex_id, std::optional<IdemClaim> idem,
                 Responder respond) {
  std::shared_ptr<UploadJob> job =
      PrepareUpload(loop, req, tenant, hex_id, &respond);
  if (job == nullptr) return;
  job->idem = std::move(idem);
  job->body = std::move(req.body);
  job->reader = std::make_unique<RecipientReader>(job->format, job->body);
  UploadStep(std::move(job));
}

std::shared_ptr<Api::UploadJob> Api::PrepareUpload(core::Loop& loop,
                                                   const HttpRequest& req,
                                                   const std::string& tenant,
                                                   absl::string_view hex_id,
                                                   Responder* respond_ptr) {
  Responder& respond = *respond_ptr;
  RecipientReader::Format format;
  const std::string* type = req.Header("content-type");
  if (type == nullptr || !RecipientReader::FormatFor(*type, &format)) {
    Error e = Invalid("Content-Type", "use application/x-ndjson or text/csv");
    e.status = 415;
    e.code = "unsupported_media_type";
    respond(ErrorResponse(e));
    return nullptr;
  }
  uint64_t id = 0;
  if (!storage::HexToId(hex_id, &id)) {
    respond(ErrorResponse(NotFound("id", "no such campaign")));
    return nullptr;
  }
  absl::StatusOr<storage::Content> content = store_->GetContent(id);
  if (absl::IsNotFound(content.status()) ||
      (content.ok() &&
       (content->tenant() != tenant || content->transactional()))) {
    respond(ErrorResponse(NotFound("id", "no such campaign")));
    return nullptr;
  }
  if (!content.ok()) {
    respond(ErrorResponse(Unavailable(content.status())));
    return nullptr;
  }
  if (!content->stream()) {
    Error e = Invalid("id", "the campaign was not created with \"stream\": true");
    e.status = 409;
    e.code = "conflict";
    respond(ErrorResponse(e));
    return nullptr;
  }
  auto compiled = render::CompiledContent::Compile(*content);
  if (!compiled.ok()) {
    respond(ErrorResponse(Unavailable(compiled.status())));
    return nullptr;
  }
  auto job = std::make_shared<UploadJob>();
  job->loop = &loop;
  job->respond = std::move(respond);
  job->tenant = tenant;
  job->format = format;
  job->content = *std::move(content);
  job->compiled = *std::move(compiled);
  const auto& fields = job->compiled->fields();
  const auto& hf = job->compiled->header_fields();
  job->in_header.resize(fields.size());
  for (size_t f = 0; f < fields.size(); ++f) {
    job->in_header[f] = std::binary_search(hf.begin(), hf.end(), fields[f]);
  }
  job->now = clock_.NowMillis();
  job->due = std::max(job->now, job->content.send_at_ms());
  job->expires_ms = job->content.expires_at_ms() != 0
                        ? job->content.expires_at_ms()
                        : job->due + job->content.expires_after_ms();
  if (registry_ != nullptr) {
    job->accepted_counter = registry_->GetCounter(
        metrics::kMessagesAcceptedTotal,
        HelpFor(metrics::kMessagesAcceptedTotal),
        {{"tenant", tenant}, {"lane", "bulk"}});
  }
  return job;
}

void Api::UploadStep(std::shared_ptr<UploadJob> job) {
  UploadJob& j = *job;
  std::string where, message;
  size_t n = 0;
  auto fail = [&j](std::string where, std::string message) {
    if (j.chunks > 0) {
      absl::StrAppend(&message, " (", j.accepted, " recipients in ", j.chunks,
                      " earlier chunks were committed and stay queued)");
    }
    j.respond(ErrorResponse(Invalid(std::move(where), std::move(message))));
  };
  // Read and validate one chunk; nothing of it is written on an error.
  const std::vector<std::string>& fields = j.compiled->fields();
  while (n < upload_chunk_) {
    if (j.recs.size() <= n) j.recs.emplace_back();
    storage::Recipient& rec = j.recs[n];
    const RecipientReader::Result r = j.reader->Next(&rec, &where, &message);
    if (r == RecipientReader::Result::kEnd) break;
    if (r == RecipientReader::Result::kError) {
      fail(std::move(where), std::move(message));
      return;
    }
    for (size_t f = 0; f < fields.size(); ++f) {
      const storage::Field* value = nullptr;
      for (const storage::Field& d : rec.fields()) {
        if (d.name() == fields[f]) {
          value = &d;
          break;
        }
      }
      if (value == nullptr) {
        fail(std::move(where),
             absl::StrCat(fields[f], ": missing: the templates use this field"));
        return;
      }
      if (j.in_header[f] && HasLineBreak(value->value())) {
        fail(std::move(where),
             absl::StrCat(fields[f],
                          ": used in a header: must not contain CR, LF or NUL"));
        return;
      }
    }
    ++n;
  }
  const bool last = j.reader->AtEnd();
  storage::StateBatch batch;
  std::vector<uint16_t> shards;
  uint64_t after_id = 0;
  if (absl::Status s = BuildUploadChunk(j, n, &batch, &shards, &after_id);
      !s.ok()) {
    j.respond(ErrorResponse(Unavailable(s)));
    return;
  }
  const int64_t accepted = static_cast<int64_t>(n - j.hits.size());
  const int64_t suppressed = static_cast<int64_t>(j.hits.size());
  const int64_t chunk = n > 0 ? 1 : 0;
  std::string response;
  if (last) {
    response = absl::StrCat(
        "{\"id\":\"", storage::IdToHex(j.content.id()),
        "\",\"chunks\":", j.chunks + chunk,
        ",\"accepted\":", j.accepted + accepted,
        ",\"suppressed\":", j.suppressed + suppressed, "}");
    if (j.idem.has_value()) {
      storage::IdempotencyStore::Put(j.tenant, j.idem->key,
                                     {j.idem->hash, 200, response, j.now},
                                     &batch);
    }
  }
  DeliveryHooks* hooks = hooks_;
  auto events = std::make_shared<std::vector<storage::StateBatch::BatchEvent>>(
      batch.TakeEvents());
  store_->Commit(
      std::move(batch), /*durable=*/true,
      [this, job, hooks, shards = std::move(shards), accepted, suppressed,
       chunk, last, after_id, blocks = recipient_blocks_,
       response = std::move(response),
       events](absl::Status s) mutable {
        // Committer thread. Only this callback touches the job until it
        // posts the next step.
        UploadJob& j = *job;
        if (!s.ok()) {
          Error e = Unavailable(s);
          if (j.chunks > 0) {
            absl::StrAppend(&e.message, " (", j.accepted, " recipients in ",
                            j.chunks,
                            " earlier chunks were committed and stay queued)");
          }
          j.loop->Post([job, e] { job->respond(ErrorResponse(e)); });
          return;
        }
        j.chunks += chunk;
        j.accepted += accepted;
        j.suppressed += suppressed;
        if (j.accepted_counter != nullptr) j.accepted_counter->Inc(accepted);
        if (event_log_ != nullptr) {
          event_log_->Append(j.tenant, std::move(*events));
        }
        if (hooks != nullptr) {
          for (uint16_t shard : shards) {
            hooks->OnEnqueued(shard, storage::BulkLaneFor(j.tenant), j.due,
                              after_id);
          }
          if (blocks && accepted > 0) hooks->OnBlocksAdded();
        }
        if (last) {
          j.loop->Post([job, response = std::move(response)] {
            job->respond(Json(200, response));
          });
        } else {
          j.loop->Post([this, job] { UploadStep(job); });
        }
      });
}

// ------------------------------------------------------- streamed uploads

bool Api::CheckUploadFields(const UploadJob& j, const storage::Recipient& rec,
                            std::string* message) const {
  const std::vector<std::string>& fields = j.compiled->fields();
  for (size_t f = 0; f < fields.size(); ++f) {
    const storage::Field* value = nullptr;
    for (const storage::Field& d : rec.fields()) {
      if (d.name() == fields[f]) {
        value = &d;
        break;
      }
    }
    if (value == nullptr) {
      *message =
          absl::StrCat(fields[f], ": missing: the templates use this field");
      return false;
    }
    if (j.in_header[f] && HasLineBreak(value->value())) {
      *message = absl::StrCat(
          fields[f], ": used in a header: must not contain CR, LF or NUL");
      return false;
    }
  }
  return true;
}

absl::Status Api::BuildUploadChunk(UploadJob& j, size_t n,
                                   storage::StateBatch* batch,
                                   std::vector<uint16_t>* shards,
                                   uint64_t* after_id) {
  j.emails.clear();
  for (size_t i = 0; i < n; ++i) j.emails.push_back(j.recs[i].address());
  j.hits.clear();
  if (absl::Status s = suppressions_->CheckMany(j.tenant, j.emails, &j.hits);
      !s.ok()) {
    return s;
  }
  batch->set_collect_events(event_log_ != nullptr);
  if (recipient_blocks_) {
    // One block for the chunk; suppressed recipients keep their own events.
    j.block_recs.clear();
    size_t next_hit = 0;
    for (size_t i = 0; i < n; ++i) {
      if (next_hit < j.hits.size() && j.hits[next_hit].first == i) {
        batch->SuppressedAtAccept(
            j.content.id(), store_->NextId(), j.recs[i].address(), j.now,
            absl::StrCat("suppressed at accept (", j.hits[next_hit].second,
                         ")"));
        ++next_hit;
        continue;
      }
      j.block_recs.push_back(&j.recs[i]);
    }
    if (!j.block_recs.empty()) {
      const uint32_t count = static_cast<uint32_t>(j.block_recs.size());
      batch->PutBlock(storage::BulkLaneFor(j.tenant), j.due, j.content.id(),
                      store_->NextIds(count), j.now, j.expires_ms,
                      j.block_recs);
    }
    *after_id = 0;  // no shard touched: hooks get OnBlocksAdded
    return absl::OkStatus();
  }
  std::vector<bool> shard_used(store_->num_shards());
  storage::QueueKey key;
  key.lane = storage::BulkLaneFor(j.tenant);
  key.due_ms = j.due;
  size_t next_hit = 0;
  // Every id of this batch is above it (DeliveryHooks::OnEnqueued).
  *after_id = store_->NextId();
  for (size_t i = 0; i < n; ++i) {
    if (next_hit < j.hits.size() && j.hits[next_hit].first == i) {
      batch->SuppressedAtAccept(
          j.content.id(), store_->NextId(), j.recs[i].address(), j.now,
          absl::StrCat("suppressed at accept (", j.hits[next_hit].second,
                       ")"));
      ++next_hit;
      continue;
    }
    storage::Recipient& rec = j.recs[i];
    rec.set_content_id(j.content.id());
    rec.set_accepted_ms(j.now);
    rec.set_expires_ms(j.expires_ms);
    key.shard = store_->ShardForDomain(DomainOf(rec.address()));
    key.id = store_->NextId();
    shard_used[key.shard] = true;
    batch->Enqueue(key, rec);
  }
  for (size_t s = 0; s < shard_used.size(); ++s) {
    if (shard_used[s]) shards->push_back(static_cast<uint16_t>(s));
  }
  return absl::OkStatus();
}

absl::Status Api::CommitUploadChunk(UploadJob& j, size_t n, ChunkDone done) {
  storage::StateBatch batch;
  std::vector<uint16_t> shards;
  uint64_t after_id = 0;
  if (absl::Status s = BuildUploadChunk(j, n, &batch, &shards, &after_id);
      !s.ok()) {
    return s;
  }
  const int64_t accepted = static_cast<int64_t>(n - j.hits.size());
  const int64_t suppressed = static_cast<int64_t>(j.hits.size());
  DeliveryHooks* hooks = hooks_;
  metrics::Counter* counter = j.accepted_counter;
  const int64_t due = j.due;
  const storage::Lane lane = storage::BulkLaneFor(j.tenant);
  auto events = std::make_shared<std::vector<storage::StateBatch::BatchEvent>>(
      batch.TakeEvents());
  auto on_durable = [hooks, counter, due, after_id, lane,
                     blocks = recipient_blocks_,
                     shards = std::move(shards),
                     accepted, suppressed, events, log = event_log_,
                     tenant = j.tenant,
                     done = std::move(done)](absl::Status s) {
                   // Committer thread.
                   if (s.ok()) {
                     if (counter != nullptr) counter->Inc(accepted);
                     if (log != nullptr) log->Append(tenant, std::move(*events));
                     if (hooks != nullptr) {
                       for (uint16_t shard : shards) {
                         hooks->OnEnqueued(shard, lane, due, after_id);
                       }
                       if (blocks && accepted > 0) hooks->OnBlocksAdded();
                     }
                   }
                   done(std::move(s), accepted, suppressed);
  };
  // The loop inserts the chunk itself (in parallel with the other loops and
  // off the committer thread), then waits for a grouped WAL sync: the answer
  // still comes only once the chunk is durable. When the store refuses a
  // direct write (sync or recovery under way, write stall, unhealthy), the
  // committer writes it as before.
  const absl::Status direct = store_->WriteUnsynced(batch);
  if (direct.ok()) {
    store_->SyncThen(std::move(on_durable));
  } else if (absl::IsUnavailable(direct)) {
    store_->Commit(std::move(batch), /*durable=*/true, std::move(on_durable));
  } else {
    return direct;
  }
  return absl::OkStatus();
}

// One streamed upload: the body is parsed as it arrives; full chunks are
// committed at once, at most upload_window_ at a time (beyond that the
// socket is not read). The state lives in a shared_ptr so that commit
// callbacks (posted back to the loop) outlive the connection. Loop thread.
class Api::UploadStream : public BodyStream {
 public:
  struct State {
    Api* api = nullptr;
    std::shared_ptr<UploadJob> job;
    BodyFlow flow;
    std::string pending;  // body bytes not yet consumed by the reader
    size_t complete = 0;  // pending[0, complete) holds whole records
    size_t scanned = 0;   // CompleteEnd's cursor in pending
    bool in_quotes = false;
    size_t n = 0;  // records of the chunk being filled (job->recs[0, n))
    int outstanding = 0;
    bool ended = false;       // the body was read completely
    bool last_issued = false;  // the final (partial) chunk was committed
    bool failed = false;
    bool answered = false;
    std::optional<Error> error;  // answered once nothing is outstanding
    int64_t chunks = 0, accepted = 0, suppressed = 0;
    int64_t committed_lines = 0;  // lines of the body committed so far
  };

  explicit UploadStream(std::shared_ptr<State> st) : st_(std::move(st)) {}

  void OnBody(absl::string_view data) override {
    State& st = *st_;
    if (st.failed) return;  // read and dropped
    RecipientReader& reader = *st.job->reader;
    const size_t used = reader.consumed();
    if (used > 0) {
      st.pending.erase(0, used);
      st.complete -= used;
      st.scanned -= used;
    }
    st.pending.append(data.data(), data.size());
    st.complete = RecipientReader::CompleteEnd(
        st.job->format, st.pending, st.complete, &st.scanned, &st.in_quotes);
    if (st.pending.size() - st.complete > kMaxLineBytes) {
      Fail(st_, absl::StrCat(st.job->format == RecipientReader::Format::kCsv
                                 ? "row "
                                 : "line ",
                             reader.lines() + 1),
           absl::StrCat("longer than ", kMaxLineBytes, " bytes"));
      return;
    }
    reader.SetInput(absl::string_view(st.pending.data(), st.complete));
    Mark(st);
    Pump(st_);
  }

  void OnEnd() override {
    State& st = *st_;
    st.ended = true;
    if (st.failed) return;
    RecipientReader& reader = *st.job->reader;
    const size_t used = reader.consumed();
    st.pending.erase(0, used);
    st.complete = st.pending.size();  // the last line needs no line break
    reader.SetInput(st.pending);
    Pump(st_);
  }

  static constexpr size_t kMaxLineBytes = 1 << 20;

  // Parses what is complete, commits full chunks while the window allows,
  // pauses or resumes reading, answers when everything is durable.
  static void Pump(const std::shared_ptr<State>& self) {
    State& st = *self;
    UploadJob& j = *st.job;
    Api& api = *st.api;
    std::string where, message;
    bool input_done = false;
    while (!st.failed && st.outstanding < api.upload_window_) {
      if (j.recs.size() <= st.n) j.recs.emplace_back();
      storage::Recipient& rec = j.recs[st.n];
      const RecipientReader::Result r = j.reader->Next(&rec, &where, &message);
      if (r == RecipientReader::Result::kEnd) {
        input_done = true;
        break;
      }
      if (r == RecipientReader::Result::kError ||
          !api.CheckUploadFields(j, rec, &message)) {
        Fail(self, std::move(where), std::move(message));
        return;
      }
      if (++st.n >= api.upload_chunk_) Commit(self);
    }
    if (st.failed) return;
    if (st.ended && input_done && !st.last_issued) {
      st.last_issued = true;
      if (st.n > 0) Commit(self);
    }
    if (st.failed) return;
    if (st.outstanding >= api.upload_window_) {
      st.flow.Pause();
    } else {
      st.flow.Resume();
    }
    MaybeAnswer(st);
  }

 private:
  static void Mark(const State& st) {
    Api& api = *st.api;
    const int64_t held = static_cast<int64_t>(st.pending.size());
    int64_t seen = api.max_buffered_bytes_.load(std::memory_order_relaxed);
    while (held > seen && !api.max_buffered_bytes_.compare_exchange_weak(
                              seen, held, std::memory_order_relaxed)) {
    }
    int out = api.max_outstanding_.load(std::memory_order_relaxed);
    while (st.outstanding > out &&
           !api.max_outstanding_.compare_exchange_weak(
               out, st.outstanding, std::memory_order_relaxed)) {
    }
  }

  // Commits job->recs[0, n) and starts a new chunk.
  static void Commit(const std::shared_ptr<State>& self) {
    State& st = *self;
    UploadJob& j = *st.job;
    const size_t n = st.n;
    st.n = 0;
    const int64_t end_line = j.reader->lines();
    core::Loop* loop = j.loop;
    absl::Status s = st.api->CommitUploadChunk(
        j, n,
        [self, loop, end_line](absl::Status s, int64_t accepted,
                               int64_t suppressed) {
          loop->Post([self, end_line, s = std::move(s), accepted,
                      suppressed] {
            State& st = *self;
            --st.outstanding;
            if (s.ok()) {
              ++st.chunks;
              st.accepted += accepted;
              st.suppressed += suppressed;
              st.committed_lines = end_line;
            } else if (!st.failed) {
              st.failed = true;
              st.error = Unavailable(s);
              st.flow.Resume();  // drop the rest of the body
            }
            if (st.failed) {
              MaybeAnswer(st);
            } else {
              Pump(self);
            }
          });
        });
    if (!s.ok()) {
      st.failed = true;
      st.error = Unavailable(s);
      st.flow.Resume();
      MaybeAnswer(st);
      return;
    }
    ++st.outstanding;
    Mark(st);
  }

  // A bad line: nothing of the current chunk is committed; answered once
  // the earlier chunks are durable. The rest of the body is read and dropped.
  static void Fail(const std::shared_ptr<State>& self, std::string where,
                   std::string message) {
    State& st = *self;
    st.failed = true;
    st.n = 0;
    st.error = Invalid(std::move(where), std::move(message));
    st.pending.clear();
    st.pending.shrink_to_fit();
    st.job->reader->SetInput(absl::string_view());
    st.flow.Resume();
    MaybeAnswer(st);
  }

  static void MaybeAnswer(State& st) {
    if (st.answered || st.outstanding > 0) return;
    UploadJob& j = *st.job;
    const bool csv = j.format == RecipientReader::Format::kCsv;
    if (st.failed) {
      st.answered = true;
      Error e = *st.error;
      absl::StrAppend(&e.message, " (", st.accepted, " recipients in ",
                      st.chunks, " chunks were committed; resume from ",
                      csv ? "row " : "line ",
                      (csv ? std::max<int64_t>(st.committed_lines, 1)
                           : st.committed_lines) + 1,
                      csv ? " after the header row)" : ")");
      j.respond(ErrorResponse(e));
      return;
    }
    if (!st.ended || !st.last_issued) return;
    st.answered = true;
    j.respond(Json(200, absl::StrCat("{\"id\":\"",
                                     storage::IdToHex(j.content.id()),
                                     "\",\"chunks\":", st.chunks,
                                     ",\"accepted\":", st.accepted,
                                     ",\"suppressed\":", st.suppressed,
                                     ",\"lines\":", st.committed_lines, "}")));
  }

  std::shared_ptr<State> st_;
};

Api::UploadMarks Api::upload_marks() const {
  UploadMarks m;
  m.max_buffered_bytes = max_buffered_bytes_.load();
  m.max_outstanding = max_outstanding_.load();
  return m;
}

StreamRoute Api::UploadStreamRoute(core::Loop& loop) {
  StreamRoute route;
  route.wants = [](const HttpRequest& head) {
    const absl::string_view path = head.path;
    return head.method == "POST" && absl::StartsWith(path, "/v1/campaigns/") &&
           absl::EndsWith(path, kRecipientsSuffix) &&
           path.size() > 14 + kRecipientsSuffix.size() &&
           path.find('/', 14) == path.size() - kRecipientsSuffix.size() &&
           head.Header("idempotency-key") == nullptr;
  };
  route.open = [this, &loop](HttpRequest&& head, Responder respond,
                             BodyFlow flow) -> std::unique_ptr<BodyStream> {
    metrics::Registry* registry = registry_;
    Responder counted = [registry,
                         respond = std::move(respond)](HttpResponse r) {
      if (registry != nullptr) {
        registry
            ->GetCounter(metrics::kHttpRequestsTotal,
                         HelpFor(metrics::kHttpRequestsTotal),
                         {{"route", "/v1/campaigns/{id}/recipients"},
                          {"code", absl::StrCat(r.status)}})
            ->Inc();
      }
      respond(std::move(r));
    };
    const std::string* tenant = Authenticate(head);
    if (tenant == nullptr) {
      Error e;
      e.status = 401;
      e.code = "unauthenticated";
      e.message = "missing or unknown API key (Authorization: Bearer KEY)";
      HttpResponse r = ErrorResponse(e);
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      counted(std::move(r));
      return nullptr;
    }
    const absl::string_view path = head.path;
    const std::string hex_id(
        path.substr(14, path.size() - 14 - kRecipientsSuffix.size()));
    std::shared_ptr<UploadJob> job =
        PrepareUpload(loop, head, *tenant, hex_id, &counted);
    if (job == nullptr) return nullptr;
    job->reader =
        std::make_unique<RecipientReader>(job->format, absl::string_view());
    auto st = std::make_shared<UploadStream::State>();
    st->api = this;
    st->job = std::move(job);
    st->flow = std::move(flow);
    return std::make_unique<UploadStream>(std::move(st));
  };
  return route;
}

HttpResponse Api::GetStatus(absl::string_view hex_id,
                            const std::string& tenant,
                            const int64_t* rescheduled) {
  Error not_found;
  not_found.status = 404;
  not_found.code = "not_found";
  not_found.field = "id";
  not_found.message = "no such campaign or message";
  uint64_t id = 0;
  if (!storage::HexToId(hex_id, &id)) return ErrorResponse(not_found);
  absl::StatusOr<storage::Content> content = store_->GetContent(id);
  if (absl::IsNotFound(content.status())) return ErrorResponse(not_found);
  absl::StatusOr<storage::Counts> counts =
      content.ok() ? store_->GetCounts(id) : content.status();
  if (!counts.ok()) {
    Error e;
    e.status = 503;
    e.code = "unavailable";
    e.message = absl::StrCat("storage: ", counts.status().message());
    return ErrorResponse(e);
  }
  if (content->tenant() != tenant) return ErrorResponse(not_found);
  const int64_t in_flight = hooks_ != nullptr ? hooks_->InFlight(id) : 0;
  const int64_t queued =
      std::max<int64_t>(0, counts->pending() - counts->deferred - in_flight);
  rapidjson::StringBuffer sb;
  JsonWriter w(sb);
  w.StartObject();
  w.Key("id");
  w.String(storage::IdToHex(id).c_str());
  w.Key("name");
  w.String(content->name().data(), content->name().size());
  w.Key("created_at");
  w.String(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                            absl::FromUnixMillis(content->created_ms()),
                            absl::UTCTimeZone())
               .c_str());
  if (content->send_at_ms() != 0) {
    w.Key("send_at");
    w.String(FormatMillis(content->send_at_ms()).c_str());
  }
  if (content->expires_at_ms() != 0) {
    w.Key("expires_at");
    w.String(FormatMillis(content->expires_at_ms()).c_str());
  }
  if (content->stream()) {
    w.Key("stream");
    w.Bool(true);
  }
  absl::StatusOr<storage::ContentState> state = store_->GetContentState(id);
  w.Key("state");
  w.String(state.ok() ? storage::ContentStateName(*state) : "unknown");
  if (rescheduled != nullptr) {
    w.Key("rescheduled");
    w.Int64(*rescheduled);
  }
  w.Key("counts");
  w.StartObject();
  w.Key("accepted");
  w.Int64(counts->accepted);
  w.Key("queued");
  w.Int64(queued);
  w.Key("in_flight");
  w.Int64(in_flight);
  w.Key("delivered");
  w.Int64(counts->delivered);
  w.Key("deferred");
  w.Int64(counts->deferred);
  w.Key("bounced");
  w.Int64(counts->bounced);
  w.Key("expired");
  w.Int64(counts->expired);
  w.Key("cancelled");
  w.Int64(counts->cancelled);
  w.EndObject();
  w.EndObject();
  return Json(200, std::string(sb.GetString(), sb.GetSize()));
}

void Api::Control(core::Loop& loop, absl::string_view hex_id,
                  absl::string_view action, const std::string& tenant,
                  Responder respond) {
  uint64_t id = 0;
  absl::StatusOr<storage::Content> content =
      storage::HexToId(hex_id, &id) ? store_->GetContent(id)
                                    : absl::NotFoundError("bad id");
  if (absl::IsNotFound(content.status()) ||
      (content.ok() && content->tenant() != tenant)) {
    respond(ErrorResponse(NotFound("id", "no such campaign or message")));
    return;
  }
  absl::StatusOr<storage::ContentState> current =
      content.ok() ? store_->GetContentState(id) : content.status();
  if (!current.ok()) {
    respond(ErrorResponse(Unavailable(current.status())));
    return;
  }
  using storage::ContentState;
  ContentState next = action == "pause"    ? ContentState::kPaused
                      : action == "resume" ? ContentState::kActive
                                           : ContentState::kCancelled;
  bool allowed = *current != ContentState::kCancelled &&
                 (action != "resume" || *current == ContentState::kPaused);
  if (!allowed) {
    Error e;
    e.status = 409;
    e.code = "conflict";
    e.field = "state";
    e.message = absl::StrCat("cannot ", action, " a campaign that is ",
                             storage::ContentStateName(*current));
    respond(ErrorResponse(e));
    return;
  }
  storage::StateBatch batch;
  batch.SetContentState(id, next);
  core::Loop* loop_ptr = &loop;
  DeliveryHooks* hooks = hooks_;
  const std::string hex(hex_id);
  const std::string owner = tenant;
  store_->Commit(std::move(batch), /*durable=*/true,
                 [this, loop_ptr, hooks, id, next, hex, owner,
                  respond](absl::Status s) {
                   // Committer thread.
                   if (s.ok() && hooks != nullptr) hooks->OnContentState(id, next);
                   loop_ptr->Post([this, s, hex, owner, respond] {
                     if (!s.ok()) {
                       respond(ErrorResponse(Unavailable(s)));
                       return;
                     }
                     // The counts as they are now: queued recipients of a
                     // cancelled campaign turn "cancelled" as the loops sweep.
                     respond(GetStatus(hex, owner));
                   });
                 });
}

void Api::Reschedule(core::Loop& loop, const HttpRequest& req,
                     absl::string_view hex_id, bool transactional,
                     const std::string& tenant, Responder respond) {
  uint64_t id = 0;
  absl::StatusOr<storage::Content> content =
      storage::HexToId(hex_id, &id) ? store_->GetContent(id)
                                    : absl::NotFoundError("bad id");
  if (absl::IsNotFound(content.status()) ||
      (content.ok() && (content->tenant() != tenant ||
                        (transactional && !content->transactional())))) {
    respond(ErrorResponse(NotFound(
        "id", transactional ? "no such message" : "no such campaign or message")));
    return;
  }
  if (req.body.size() > static_cast<size_t>(config_.max_request_bytes)) {
    respond(ErrorResponse(TooLarge("", "request body too large")));
    return;
  }
  absl::StatusOr<storage::ContentState> state =
      content.ok() ? store_->GetContentState(id) : content.status();
  absl::StatusOr<storage::Counts> counts =
      state.ok() ? store_->GetCounts(id) : state.status();
  if (!counts.ok()) {
    respond(ErrorResponse(Unavailable(counts.status())));
    return;
  }
  const char* what = content->transactional() ? "message" : "campaign";
  const bool finished = !content->stream() && counts->pending() <= 0;
  if (*state == storage::ContentState::kCancelled || finished) {
    Error e;
    e.status = 409;
    e.code = "conflict";
    e.field = "state";
    e.message = absl::StrCat(
        "cannot reschedule a ", what, " that is ",
        finished && *state != storage::ContentState::kCancelled
            ? "finished (every recipient has a final outcome)"
            : storage::ContentStateName(*state));
    respond(ErrorResponse(e));
    return;
  }
  storage::Content updated;
  storage::Reschedule spec;
  Error err;
  if (!ParseReschedule(req.body, clock_.NowMillis(), *content, &updated,
                       &spec, &err)) {
    respond(ErrorResponse(err));
    return;
  }
  storage::StateBatch batch;
  batch.PutContent(updated);
  core::Loop* loop_ptr = &loop;
  DeliveryHooks* hooks = hooks_;
  const std::string hex(hex_id);
  const std::string owner = tenant;
  // Answered on the request's loop once the moves are committed.
  auto answer = [this, loop_ptr, hex, owner,
                 respond](absl::StatusOr<int64_t> moved) {
    loop_ptr->Post([this, moved, hex, owner, respond] {
      if (!moved.ok()) {
        respond(ErrorResponse(Unavailable(moved.status())));
        return;
      }
      respond(GetStatus(hex, owner, &*moved));
    });
  };
  store_->Commit(std::move(batch), /*durable=*/true,
                 [hooks, id, spec, answer](absl::Status s) {
                   // Committer thread.
                   if (!s.ok()) {
                     answer(s);
                   } else if (hooks != nullptr) {
                     hooks->Reschedule(id, spec, answer);
                   } else {
                     answer(int64_t{0});
                   }
                 });
}

void Api::AddSuppressions(core::Loop& loop, const HttpRequest& req,
                          const std::string& tenant, Responder respond) {
  if (req.body.size() > static_cast<size_t>(config_.max_request_bytes)) {
    respond(ErrorResponse(TooLarge("", "request body too large")));
    return;
  }
  rapidjson::Document doc;
  doc.Parse(req.body.data(), req.body.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    respond(ErrorResponse(Invalid("", "the body must be a JSON object")));
    return;
  }
  storage::SuppressionReason reason = storage::SuppressionReason::kApi;
  std::vector<std::string> entries;
  bool have_entries = false;
  for (const auto& m : doc.GetObject()) {
    const absl::string_view name = Str(m.name);
    if (name == "entries") {
      if (!m.value.IsArray() || m.value.Empty()) {
        respond(ErrorResponse(
            Invalid("entries", "must be a non-empty array of strings")));
        return;
      }
      if (m.value.Size() > kMaxSuppressionEntries) {
        respond(ErrorResponse(TooLarge(
            "entries", absl::StrCat("more than ", kMaxSuppressionEntries,
                                    " entries"))));
        return;
      }
      for (rapidjson::SizeType i = 0; i < m.value.Size(); ++i) {
        const Value& v = m.value[i];
        if (!v.IsString() || !IsValidSuppressionEntry(Str(v))) {
          respond(ErrorResponse(Invalid(
              absl::StrCat("entries[", i, "]"),
              "not an address or a domain (\"a@example.com\", "
              "\"@example.com\")")));
          return;
        }
        entries.emplace_back(Str(v));
      }
      have_entries = true;
    } else if (name == "reason") {
      if (!m.value.IsString() ||
          !storage::ParseSuppressionReason(Str(m.value), &reason)) {
        respond(ErrorResponse(Invalid(
            "reason", "one of api, unsubscribe, bounce, complaint")));
        return;
      }
    } else {
      respond(ErrorResponse(Invalid(std::string(name), "unknown field")));
      return;
    }
  }
  if (!have_entries) {
    respond(ErrorResponse(Invalid("entries", "is required")));
    return;
  }
  core::Loop* loop_ptr = &loop;
  absl::Status s = suppressions_->Add(
      tenant, entries, reason, clock_.NowMillis(),
      [loop_ptr, respond](absl::StatusOr<int> added) {
        // Committer thread.
        HttpResponse r =
            added.ok()
                ? Json(201, absl::StrCat("{\"added\":", *added, "}"))
                : ErrorResponse(Unavailable(added.status()));
        loop_ptr->Post([respond, r = std::move(r)]() mutable {
          respond(std::move(r));
        });
      });
  if (!s.ok()) {
    respond(ErrorResponse(absl::IsInvalidArgument(s)
                              ? Invalid("entries", std::string(s.message()))
                              : Unavailable(s)));
  }
}

HttpResponse Api::ListSuppressions(const HttpRequest& req,
                                   const std::string& tenant) {
  std::string cursor, limit_text;
  if (!QueryParam(req.query, "cursor", &cursor)) {
    return ErrorResponse(Invalid("cursor", "malformed percent-encoding"));
  }
  int limit = kDefaultListLimit;
  if (!QueryParam(req.query, "limit", &limit_text)) {
    return ErrorResponse(Invalid("limit", "malformed percent-encoding"));
  }
  if (!limit_text.empty() &&
      (!absl::SimpleAtoi(limit_text, &limit) || limit < 1 ||
       limit > storage::SuppressionStore::kMaxListLimit)) {
    return ErrorResponse(Invalid(
        "limit", absl::StrCat("must be 1..",
                              storage::SuppressionStore::kMaxListLimit)));
  }
  absl::StatusOr<storage::SuppressionPage> page =
      suppressions_->List(tenant, cursor, limit);
  if (absl::IsInvalidArgument(page.status())) {
    return ErrorResponse(Invalid("cursor", std::string(page.status().message())));
  }
  if (!page.ok()) return ErrorResponse(Unavailable(page.status()));
  rapidjson::StringBuffer sb;
  JsonWriter w(sb);
  w.StartObject();
  w.Key("entries");
  w.StartArray();
  for (const storage::SuppressionEntry& e : page->entries) {
    w.StartObject();
    w.Key("entry");
    w.String(e.entry.data(), static_cast<rapidjson::SizeType>(e.entry.size()));
    w.Key("reason");
    const absl::string_view reason = storage::SuppressionReasonName(e.reason);
    w.String(reason.data(), static_cast<rapidjson::SizeType>(reason.size()));
    w.Key("created_at");
    w.String(FormatMillis(e.created_ms).c_str());
    w.EndObject();
  }
  w.EndArray();
  w.Key("next_cursor");
  if (page->next_cursor.empty()) {
    w.Null();
  } else {
    w.String(page->next_cursor.c_str());
  }
  w.EndObject();
  return Json(200, std::string(sb.GetString(), sb.GetSize()));
}

void Api::RemoveSuppression(core::Loop& loop, absl::string_view encoded,
                            const std::string& tenant, Responder respond) {
  std::string entry;
  if (!PercentDecode(encoded, /*plus_is_space=*/false, &entry) ||
      !IsValidSuppressionEntry(entry)) {
    respond(ErrorResponse(
        Invalid("entry", "not an address or a domain (percent-encoded)")));
    return;
  }
  core::Loop* loop_ptr = &loop;
  absl::Status s = suppressions_->Remove(
      tenant, entry, [loop_ptr, respond, entry](absl::Status done) {
        // Committer thread.
        HttpResponse r;
        if (done.ok()) {
          rapidjson::StringBuffer sb;
          JsonWriter w(sb);
          w.StartObject();
          w.Key("removed");
          w.String(entry.data(), static_cast<rapidjson::SizeType>(entry.size()));
          w.EndObject();
          r = Json(200, std::string(sb.GetString(), sb.GetSize()));
        } else {
          r = ErrorResponse(Unavailable(done));
        }
        loop_ptr->Post([respond, r = std::move(r)]() mutable {
          respond(std::move(r));
        });
      });
  if (absl::IsNotFound(s)) {
    respond(ErrorResponse(NotFound("entry", "not on the suppression list")));
  } else if (absl::IsInvalidArgument(s)) {
    respond(ErrorResponse(Invalid("entry", std::string(s.message()))));
  } else if (!s.ok()) {
    respond(ErrorResponse(Unavailable(s)));
  }
}

void Api::Unsubscribe(core::Loop& loop, const HttpRequest& req,
                      absl::string_view token, Responder respond) {
  if (unsubscribe_secret_.empty()) {
    respond(ErrorResponse(NotFound("", "no such route")));
    return;
  }
  absl::StatusOr<hygiene::VerifiedUnsubscribe> v =
      hygiene::VerifyUnsubscribeToken(unsubscribe_secret_, token);
  if (!v.ok()) {
    Error e = Invalid("token", "invalid or tampered unsubscribe link");
    e.code = "invalid_token";
    respond(ErrorResponse(e));
    return;
  }
  if (req.method == "GET") {
    // No state change on GET (link scanners follow links): a form that POSTs
    // the RFC 8058 body to this same URL.
    respond(Html(
        200, "Unsubscribe",
        absl::StrCat("<p>Unsubscribe <b>", HtmlEscape(v->address),
                     "</b> from these mails?</p>\n<form method=\"post\">"
                     "<input type=\"hidden\" name=\"List-Unsubscribe\" "
                     "value=\"One-Click\"><button type=\"submit\">"
                     "Unsubscribe</button></form>")));
    return;
  }
  // POST. RFC 8058 clients send "List-Unsubscribe=One-Click" (urlencoded or
  // multipart); the signed token alone decides, so the body is not required.
  core::Loop* loop_ptr = &loop;
  const std::string address = v->address;
  absl::Status s = suppressions_->Add(
      v->tenant, {v->address}, storage::SuppressionReason::kUnsubscribe,
      clock_.NowMillis(),
      [loop_ptr, respond, address](absl::StatusOr<int> added) {
        // Committer thread.
        HttpResponse r =
            added.ok()
                ? Html(200, "Unsubscribed",
                       absl::StrCat("<p><b>", HtmlEscape(address),
                                    "</b> is unsubscribed.</p>"))
                : ErrorResponse(Unavailable(added.status()));
        loop_ptr->Post([respond, r = std::move(r)]() mutable {
          respond(std::move(r));
        });
      });
  if (!s.ok()) {
    respond(ErrorResponse(absl::IsInvalidArgument(s)
                              ? Invalid("token", std::string(s.message()))
                              : Unavailable(s)));
  }
}

// ------------------------------------------------------------------ events

HttpResponse Api::ListEvents(const HttpRequest& req,
                             const std::string& tenant) {
  std::string campaign, recipient, email, types, limit_text, after;
  for (auto [name, value] :
       {std::pair<const char*, std::string*>{"campaign", &campaign},
        {"recipient", &recipient},
        {"email", &email},
        {"type", &types},
        {"limit", &limit_text},
        {"after", &after}}) {
    if (!QueryParam(req.query, name, value)) {
      return ErrorResponse(Invalid(name, "malformed percent-encoding"));
    }
  }
  uint64_t content_id = 0;
  if (!storage::HexToId(campaign, &content_id)) {
    return ErrorResponse(Invalid(
        "campaign", "required: the 16 hex digit id of a campaign or message"));
  }
  uint64_t recipient_id = 0;
  if (!recipient.empty() && (!storage::HexToId(recipient, &recipient_id) ||
                             recipient_id == 0)) {
    return ErrorResponse(
        Invalid("recipient", "must be a 16 hex digit recipient id"));
  }
  // Bit per storage::Event::State; 0: every type.
  uint32_t type_mask = 0;
  if (!types.empty()) {
    for (absl::string_view t : absl::StrSplit(types, ',')) {
      storage::Event::State state;
      if (!events::ParseEventType(absl::StripAsciiWhitespace(t), &state)) {
        return ErrorResponse(Invalid(
            "type", absl::StrCat("unknown event type \"", t,
                                 "\" (accepted, delivered, deferred, bounced, "
                                 "expired, suppressed, cancelled)")));
      }
      type_mask |= 1u << state;
    }
  }
  constexpr int kDefaultEventsLimit = 100;
  constexpr int kMaxEventsLimit = 1000;
  int limit = kDefaultEventsLimit;
  if (!limit_text.empty() &&
      (!absl::SimpleAtoi(limit_text, &limit) || limit < 1 ||
       limit > kMaxEventsLimit)) {
    return ErrorResponse(
        Invalid("limit", absl::StrCat("must be 1..", kMaxEventsLimit)));
  }
  // Cursor: recipient id and seq of the last event examined, 24 hex digits.
  std::string after_key;
  if (!after.empty()) {
    uint64_t rid = 0, seq = 0;
    if (after.size() != 24 || !storage::HexToId(after.substr(0, 16), &rid) ||
        !storage::HexToId(absl::StrCat("00000000", after.substr(16)), &seq)) {
      return ErrorResponse(Invalid("after", "not a cursor of this API"));
    }
    after_key = storage::EventKey(content_id, rid, static_cast<uint32_t>(seq));
  }
  Error not_found;
  not_found.status = 404;
  not_found.code = "not_found";
  not_found.field = "campaign";
  not_found.message = "no such campaign or message";
  absl::StatusOr<storage::Content> content = store_->GetContent(content_id);
  if (absl::IsNotFound(content.status())) return ErrorResponse(not_found);
  if (!content.ok()) return ErrorResponse(Unavailable(content.status()));
  if (content->tenant() != tenant) return ErrorResponse(not_found);

  auto keep = [&](const storage::QueueStore::EventEntry& e) {
    if (type_mask != 0 && (type_mask & (1u << e.event.state())) == 0) {
      return false;
    }
    return email.empty() || absl::EqualsIgnoreCase(e.event.address(), email);
  };
  std::vector<storage::QueueStore::EventEntry> page;
  std::string last;
  bool more = false;
  // Filters may skip many events: the work of one request is bounded, and
  // the cursor resumes after the last event examined.
  constexpr size_t kMaxExamined = 100000;
  if (absl::Status s = store_->ScanEvents(content_id, recipient_id, after_key,
                                          static_cast<size_t>(limit),
                                          kMaxExamined, keep, &page, &last,
                                          &more);
      !s.ok()) {
    return ErrorResponse(Unavailable(s));
  }
  std::string body = "{\"events\":[";
  for (size_t i = 0; i < page.size(); ++i) {
    if (i > 0) body.push_back(',');
    events::AppendEventJson("", page[i].content_id, page[i].recipient_id,
                            page[i].event, &body);
  }
  body.append("],\"next\":");
  uint64_t cid = 0, rid = 0;
  uint32_t seq = 0;
  if (more && storage::DecodeEventKey(last, &cid, &rid, &seq)) {
    body.push_back('"');
    storage::AppendIdHex(rid, &body);
    body.append(storage::IdToHex(seq).substr(8));
    body.push_back('"');
  } else {
    body.append("null");
  }
  body.push_back('}');
  return Json(200, std::move(body));
}

}  // namespace salvo::api
