// Blast-radius policy (see blast_radius.h).
#include "engine/classify/blast_radius.h"

namespace salvo::classify {
namespace {

// The session is gone or the server asked us to go away.
bool SessionLevel(const smtp::Reply& r) { return r.code == 0 || r.code == 421; }

Verdict Decide(const smtp::Reply& r, Scope scope) {
  Verdict v;
  v.reply = r;
  if (SessionLevel(r)) {
    v.action = Action::kTryNextMx;
    v.scope = Scope::kSession;
  } else if (r.IsPermanent()) {
    v.action = Action::kBounce;
    v.scope = scope;
  } else {
    v.action = Action::kDefer;
    v.scope = scope;
  }
  return v;
}

}  // namespace

Verdict ForRecipient(const smtp::TransactionResult& result, size_t i) {
  if (!result.mail.IsPositive()) return Decide(result.mail, Scope::kMessage);
  if (i < result.rcpts.size() && !result.rcpts[i].IsPositive()) {
    return Decide(result.rcpts[i], Scope::kRecipient);
  }
  if (i >= result.rcpts.size()) {
    smtp::Reply missing;
    missing.synthetic = true;
    missing.text = "no reply for this recipient";
    return Decide(missing, Scope::kSession);
  }
  if (result.data.code != 354 && !result.data.IsPositive()) {
    return Decide(result.data, Scope::kMessage);
  }
  const smtp::Reply& end = result.data_end;
  if (end.code >= 200 && end.code < 300) {
    Verdict v;
    v.action = Action::kDelivered;
    v.scope = Scope::kNone;
    v.reply = end;
    return v;
  }
  return Decide(end, Scope::kMessage);
}

Verdict ForSessionFailure(const smtp::Reply& reply) {
  Verdict v = Decide(reply, Scope::kSession);
  if (v.action == Action::kBounce) v.scope = Scope::kSession;
  return v;
}

const char* ScopeName(Scope s) {
  switch (s) {
    case Scope::kNone: return "none";
    case Scope::kSession: return "session";
    case Scope::kMessage: return "message";
    case Scope::kRecipient: return "recipient";
  }
  return "?";
}

const char* ActionName(Action a) {
  switch (a) {
    case Action::kDelivered: return "delivered";
    case Action::kDefer: return "defer";
    case Action::kBounce: return "bounce";
    case Action::kTryNextMx: return "try-next-mx";
  }
  return "?";
}

}  // namespace salvo::classify
