// Test tool (testonly): signs one wire-form message for dkim_verify_test.py.
//   dkim_sign_tool MESSAGE_FILE TIME SIGNER...
// SIGNER is "domain:selector:algorithm:key_file"; TIME is unix seconds (t=).
// Prints the DKIM-Signature headers of every signer whose domain matches the
// From domain (DkimSigners::SignFor), then the message unchanged; with
// --record prints each signer's DNS TXT record instead; with --render signs
// RenderSampleMessage(5000) instead of MESSAGE. Exit 1 on errors.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/core/clock.h"
#include "engine/dkim/dkim_signer.h"
#include "engine/dkim/sample_message.h"

int main(int argc, char** argv) {
  using namespace salvo;
  std::vector<std::string> args(argv + 1, argv + argc);
  bool record = !args.empty() && args[0] == "--record";
  if (record) args.erase(args.begin());
  bool render = !args.empty() && args[0] == "--render";
  if (render) args.erase(args.begin());
  int64_t t;
  if (args.size() < 3 || !absl::SimpleAtoi(args[1], &t)) {
    std::cerr << "usage: dkim_sign_tool [--record] MESSAGE TIME "
                 "domain:selector:algorithm:key_file...\n";
    return 1;
  }
  std::ifstream in(args[0], std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string message = ss.str();
  if (render) {
    auto rendered = dkim::RenderSampleMessage(5000);
    if (!rendered.ok()) {
      std::cerr << rendered.status() << "\n";
      return 1;
    }
    message = std::move(*rendered);
  }
  core::ManualClock clock(absl::FromUnixSeconds(t));
  std::vector<dkim::SignerOptions> options;
  for (size_t i = 2; i < args.size(); ++i) {
    std::vector<std::string> parts =
        absl::StrSplit(args[i], absl::MaxSplits(':', 3));
    if (parts.size() != 4) {
      std::cerr << "bad signer " << args[i] << "\n";
      return 1;
    }
    auto algorithm = dkim::ParseAlgorithm(parts[2]);
    if (!algorithm.ok()) {
      std::cerr << algorithm.status() << "\n";
      return 1;
    }
    dkim::SignerOptions o;
    o.domain = parts[0];
    o.selector = parts[1];
    o.algorithm = *algorithm;
    o.private_key_file = parts[3];
    if (record) {
      auto signer = dkim::DkimSigner::Create(o, clock);
      if (!signer.ok()) {
        std::cerr << signer.status() << "\n";
        return 1;
      }
      std::cout << (*signer)->dns_record() << "\n";
    }
    options.push_back(std::move(o));
  }
  if (record) return 0;
  auto signers = dkim::DkimSigners::Create(options, clock);
  if (!signers.ok()) {
    std::cerr << signers.status() << "\n";
    return 1;
  }
  // The From domain, as the delivery core would know it.
  absl::string_view from_domain;
  size_t from = message.find("\nFrom:");
  if (message.rfind("From:", 0) == 0) {
    from = 0;
  } else if (from != std::string::npos) {
    ++from;
  }
  if (from != std::string::npos) {
    size_t eol = message.find("\r\n", from);
    from_domain = dkim::AddressDomain(
        absl::string_view(message).substr(from + 5, eol - from - 5));
  }
  std::string headers;
  absl::Status s = signers->SignFor(from_domain, message, &headers);
  if (!s.ok()) {
    std::cerr << s << "\n";
    return 1;
  }
  std::cout << headers << message;
  return 0;
}
