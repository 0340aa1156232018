#include "coordinator/base/sha256.h"

#include <openssl/sha.h>

#include "absl/strings/escaping.h"

namespace schemagate {

Sha256Digest Sha256(absl::string_view text) {
  Sha256Digest digest;
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
  return digest;
}

std::string Sha256Hex(absl::string_view text) {
  const Sha256Digest digest = Sha256(text);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

}  // namespace schemagate
