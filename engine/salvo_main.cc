// salvo: the engine binary.
//   salvo [--config FILE] [--set section.key=value ...] [--check-config]
// With no --config it runs on the embedded defaults (deploy/salvo.toml).
// Prints "salvo: listening on http://HOST:PORT" once it accepts requests;
// SIGTERM or SIGINT stops it gracefully.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/config/config.h"
#include "engine/engine.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: salvo [--config FILE] [--set section.key=value ...] "
               "[--check-config]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  std::vector<std::string> overrides;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (a == "--set" && i + 1 < argc) {
      overrides.push_back(argv[++i]);
    } else if (a == "--check-config") {
      check_only = true;
    } else if (a == "--help" || a == "-h") {
      Usage();
      return 0;
    } else {
      std::fprintf(stderr, "salvo: unknown argument \"%s\"\n", a.c_str());
      return Usage();
    }
  }
  auto config = config_path.empty()
                    ? salvo::config::ParseConfig(salvo::config::DefaultToml())
                    : salvo::config::LoadConfigFile(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "salvo: %s\n", config.status().ToString().c_str());
    return 2;
  }
  for (const std::string& o : overrides) {
    absl::Status s = salvo::config::ApplyOverride(o, &*config);
    if (!s.ok()) {
      std::fprintf(stderr, "salvo: --set %s: %s\n", o.c_str(),
                   s.ToString().c_str());
      return 2;
    }
  }
  if (check_only) {
    std::printf("salvo: configuration ok\n");
    return 0;
  }

  // Only the main thread takes the stop signals.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto engine = salvo::Engine::Start(*config);
  if (!engine.ok()) {
    std::fprintf(stderr, "salvo: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  std::string host = config->http_listen.substr(
      0, config->http_listen.rfind(':'));
  std::printf("salvo: listening on http://%s:%d (%d loops, spool %s)\n",
              host.c_str(), (*engine)->http_port(), (*engine)->loops(),
              config->spool_path.c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop, &sig);
  std::printf("salvo: %s received, draining\n", strsignal(sig));
  std::fflush(stdout);
  int open = (*engine)->Stop();
  std::printf("salvo: stopped (%d handles left open)\n", open);
  return open == 0 ? 0 : 1;
}
