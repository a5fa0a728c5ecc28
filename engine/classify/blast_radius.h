// Pure: what one SMTP transaction's replies mean for each of its recipients,
// by blast radius (Postfix smtp_trouble.c is the model). The one place that
// holds this policy:
//   session   421, a dropped connection or a timeout: this MX is unusable
//             now; move on to the next MX of the domain
//   message   4xx/5xx on MAIL or DATA, or after the final ".": every
//             recipient of the transaction shares the outcome
//   recipient 4xx/5xx on RCPT: that recipient only
// Transient outcomes defer; permanent ones bounce. Any thread.
#ifndef SALVO_ENGINE_CLASSIFY_BLAST_RADIUS_H_
#define SALVO_ENGINE_CLASSIFY_BLAST_RADIUS_H_

#include <cstddef>

#include "engine/smtp/reply.h"
#include "engine/smtp/transaction.h"

namespace salvo::classify {

enum class Scope { kNone, kSession, kMessage, kRecipient };
enum class Action { kDelivered, kDefer, kBounce, kTryNextMx };

struct Verdict {
  Action action = Action::kDefer;
  Scope scope = Scope::kNone;
  smtp::Reply reply;  // the reply that decided it
};

// The verdict for recipient `i` of `result`.
Verdict ForRecipient(const smtp::TransactionResult& result, size_t i);

// The verdict for a reply that ended a session or a lookup before any
// transaction (connect failure, greeting, EHLO, DNS): session scope.
Verdict ForSessionFailure(const smtp::Reply& reply);

const char* ScopeName(Scope s);
const char* ActionName(Action a);

}  // namespace salvo::classify

#endif  // SALVO_ENGINE_CLASSIFY_BLAST_RADIUS_H_
