// SHA-256, the one digest schemagate uses: migration checksums, schema
// fingerprints, lock keys, token comparison and agent target keys.
#ifndef SCHEMAGATE_COORDINATOR_BASE_SHA256_H_
#define SCHEMAGATE_COORDINATOR_BASE_SHA256_H_

#include <array>
#include <string>

#include "absl/strings/string_view.h"

namespace schemagate {

using Sha256Digest = std::array<unsigned char, 32>;

Sha256Digest Sha256(absl::string_view text);

// Lower-case hex of Sha256(text), 64 characters.
std::string Sha256Hex(absl::string_view text);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_BASE_SHA256_H_
