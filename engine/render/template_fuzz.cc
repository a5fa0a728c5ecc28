// libFuzzer target for CompiledContent: input bytes split on '\0' into from,
// subject, html, text, a header value, raw flag and merge values. Whatever
// compiles must render to valid wire form (CRLF only, lines <= 998, ends with
// CRLF); violations abort. Build with clang for real fuzzing:
//   clang++-14 -std=c++17 -O1 -g -fsanitize=fuzzer,address -I. -I$BIN
//     engine/render/{template,mime,template_fuzz}.cc $BIN/storage/records.pb.cc
//     -lprotobuf -labsl_status -labsl_strings ... (BIN = bazel-bin)
// template_fuzz_test runs it over seeded random inputs under Bazel.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "engine/render/template.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

void CheckWireForm(const std::string& wire) {
  Check(wire.size() >= 2 && wire.compare(wire.size() - 2, 2, "\r\n") == 0);
  size_t line = 0;
  for (size_t i = 0; i < wire.size(); ++i) {
    if (wire[i] == '\r') {
      Check(i + 1 < wire.size() && wire[i + 1] == '\n');
      Check(line <= 998);
      line = 0;
      ++i;
    } else {
      Check(wire[i] != '\n');
      ++line;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts = absl::StrSplit(input, '\0');
  parts.resize(std::max<size_t>(parts.size(), 7));
  salvo::storage::Content content;
  content.set_from(parts[0]);
  content.set_subject(parts[1]);
  content.set_html(parts[2]);
  content.set_text(parts[3]);
  auto* h = content.add_headers();
  h->set_name("X-Fuzz");
  h->set_value(parts[4]);
  if (parts[5] == "raw") content.set_raw(parts[6]);
  auto compiled = salvo::render::CompiledContent::Compile(content);
  if (!compiled.ok()) return 0;
  std::vector<salvo::render::MergeField> fields;
  for (size_t i = 0; i < (*compiled)->fields().size(); ++i) {
    fields.emplace_back((*compiled)->fields()[i], parts[6 + i % (parts.size() - 6)]);
  }
  salvo::render::RenderInput in;
  in.rcpt = parts[6];
  in.fields = fields;
  in.message_id = "fuzz@salvo.example";
  in.date = absl::FromUnixSeconds(1700000000);
  std::string out;
  Check((*compiled)->Render(in, &out).ok());
  CheckWireForm(out);
  return 0;
}
