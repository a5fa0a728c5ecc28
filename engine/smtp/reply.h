// An SMTP reply as a value. Outcomes are data: a 550 is not an error of the
// code, so it is never an absl::Status. Any thread.
#ifndef SALVO_ENGINE_SMTP_REPLY_H_
#define SALVO_ENGINE_SMTP_REPLY_H_

#include <string>

namespace salvo::smtp {

// The command a reply answered (or the stage where the session failed).
enum class Stage {
  kConnect,
  kGreeting,
  kEhlo,
  kHelo,
  kMail,
  kRcpt,
  kData,      // the 354 to DATA
  kDataEnd,   // the reply to the final "."
  kRset,
  kQuit,
  kStartTls,      // the reply to STARTTLS (RFC 3207)
  kTlsHandshake,  // the TLS handshake after "220" to STARTTLS (no reply)
  kBdat,          // the reply to "BDAT <n> LAST" (RFC 3030)
};
const char* StageName(Stage s);

struct Reply {
  int code = 0;           // 0: no reply (connection failure, timeout, ...)
  std::string enhanced;   // "5.1.1" when the server sent one, else empty
  std::string text;       // text of all lines, joined with "\n"
  Stage stage = Stage::kConnect;
  bool synthetic = false; // made up locally (timeout, reset, protocol error)

  bool IsPositive() const { return code >= 200 && code < 400; }
  bool IsTransient() const { return code == 0 || (code >= 400 && code < 500); }
  bool IsPermanent() const { return code >= 500 && code < 600; }
  // "550 5.1.1 text" (first line only), or "local: <text>" when synthetic.
  std::string ToString() const;
};

}  // namespace salvo::smtp

#endif  // SALVO_ENGINE_SMTP_REPLY_H_
