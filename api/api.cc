// Routes and submission (see api.h). Validation is pure and runs on the loop
// thread over the request body parsed in situ (strings stay views into it);
// the batch is committed by the QueueStore's committer thread and the answer
// is posted back to the loop.
#include "api/api.h"

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
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "api/address.h"
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
  struct Rcpt {
    absl::string_view email;
    const Value* data = nullptr;  // object of strings, or null
  };
  std::vector<Rcpt> rcpts;
};

class Validator {
 public:
  Validator(const config::Config& config, bool transactional)
      : config_(config), transactional_(transactional) {}

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
        out->expires_after_ms = absl::ToInt64Milliseconds(d);
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
    if (!have_rcpts) return Missing(transactional_ ? "to" : "recipients", err);
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

  bool Recipients(const Value& v, Submission* out, Error* err) {
    if (!v.IsArray() || v.Empty()) {
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
      clock_(clock) {}

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
  if (route != "/healthz" && route != "/metrics") {
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
  if (req.method != allowed) {
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
  } else {
    Submit(loop, std::move(req), *tenant, route == "/v1/messages",
           std::move(counted));
  }
}

void Api::Submit(core::Loop& loop, HttpRequest&& req, const std::string& tenant,
                 bool transactional, Responder respond) {
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
  Validator validator(config_, transactional);
  if (!validator.Parse(doc, &sub, &err)) {
    respond(ErrorResponse(err));
    return;
  }
  const int64_t now = clock_.NowMillis();
  storage::Content& content = sub.content;
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

  // Everything is valid: build the one batch.
  const storage::Lane lane =
      transactional ? storage::Lane::kTransactional : storage::Lane::kBulk;
  storage::StateBatch batch;
  batch.PutContent(content);
  std::vector<bool> shard_used(store_->num_shards());
  storage::Recipient rec;
  storage::QueueKey key;
  key.lane = lane;
  key.due_ms = now;
  for (const Submission::Rcpt& r : sub.rcpts) {
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
    rec.set_expires_ms(now + sub.expires_after_ms);
    key.shard = store_->ShardForDomain(DomainOf(r.email));
    key.id = store_->NextId();
    shard_used[key.shard] = true;
    batch.Enqueue(key, rec);
  }
  std::vector<uint16_t> shards;
  for (size_t s = 0; s < shard_used.size(); ++s) {
    if (shard_used[s]) shards.push_back(static_cast<uint16_t>(s));
  }
  const int64_t accepted = static_cast<int64_t>(sub.rcpts.size());
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
  store_->Commit(
      std::move(batch), /*durable=*/true,
      [loop_ptr, respond = std::move(respond), shards = std::move(shards),
       hooks, accepted_counter, lane, now, id, accepted](absl::Status s) {
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
        loop_ptr->Post([respond, id, accepted] {
          respond(Json(201, absl::StrCat("{\"id\":\"", storage::IdToHex(id),
                                         "\",\"accepted\":", accepted, "}")));
        });
        if (hooks != nullptr) {
          for (uint16_t shard : shards) hooks->OnEnqueued(shard, lane, now);
        }
      });
}

HttpResponse Api::GetStatus(absl::string_view hex_id,
                            const std::string& tenant) {
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
  w.EndObject();
  w.EndObject();
  return Json(200, std::string(sb.GetString(), sb.GetSize()));
}

}  // namespace salvo::api
