// Unpadded base64url (RFC 4648 section 5), pure. Append form so that a hot
// path reuses its buffer. Any thread.
#ifndef SALVO_ENGINE_HYGIENE_BASE64URL_H_
#define SALVO_ENGINE_HYGIENE_BASE64URL_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace salvo::hygiene {

// Appends base64url of data[0, n), without '=' padding.
void AppendBase64Url(const uint8_t* data, size_t n, std::string* out);

// Decodes unpadded base64url into out[0, *n) (out must hold
// in.size() * 3 / 4 bytes). false on any character outside the alphabet, on
// padding, or on an impossible length (size % 4 == 1) or non-zero tail bits.
bool DecodeBase64Url(absl::string_view in, uint8_t* out, size_t* n);

}  // namespace salvo::hygiene

#endif  // SALVO_ENGINE_HYGIENE_BASE64URL_H_
