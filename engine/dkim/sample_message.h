// Test and bench helper: one message in SMTP wire form written by the real
// renderer (engine/render) from a campaign with html + text parts, merge
// fields, List-Unsubscribe and lines that get dot-stuffed. From is
// "Salvo Shop <news@shop.example>". Any thread.
#ifndef SALVO_ENGINE_DKIM_SAMPLE_MESSAGE_H_
#define SALVO_ENGINE_DKIM_SAMPLE_MESSAGE_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace salvo::dkim {

// A rendered message of roughly `approx_bytes` (at least ~1 KB).
// Its HTML lines hold SP pairs and TABs (the rewrite path of relaxed body
// canonicalization on every other line).
absl::StatusOr<std::string> RenderSampleMessage(size_t approx_bytes);

// The message of bench/e2e_bench.py's campaign (tests/lib/salvo.py
// build_campaign): ~5 KB of plain html + text lines, nothing to rewrite.
absl::StatusOr<std::string> RenderCampaignMessage(size_t body_bytes);

}  // namespace salvo::dkim

#endif  // SALVO_ENGINE_DKIM_SAMPLE_MESSAGE_H_
