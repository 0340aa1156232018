#include "coordinator/server/access.h"
#include "coordinator/base/sha256.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "openssl/bio.h"
#include "openssl/crypto.h"
#include "openssl/err.h"
#include "openssl/evp.h"
#include "openssl/pem.h"
#include "openssl/x509.h"

namespace schemagate {
namespace {

bool SameDigest(const Sha256Digest& a, const Sha256Digest& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

absl::StatusOr<std::string> ReadWholeFile(absl::string_view flag, const std::string& path) {
  // A directory opens as a stream and reads as empty: say what it is.
  struct stat info;
  if (stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " is a directory; give the file inside it"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read ", path, ": ", strerror(errno)));
  }
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  }
  return content.str();
}

}  // namespace

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  return SameDigest(Sha256(a), Sha256(b));
}

void AccessPolicy::SetTokens(const AccessTokens& tokens) {
  absl::MutexLock lock(&mu_);
  operator_digest_.reset();
  agent_digest_.reset();
  if (!tokens.operator_token.empty()) operator_digest_ = Sha256(tokens.operator_token);
  if (!tokens.agent_token.empty()) agent_digest_ = Sha256(tokens.agent_token);
}

bool AccessPolicy::enabled() const {
  absl::MutexLock lock(&mu_);
  return operator_digest_.has_value() || agent_digest_.has_value();
}

absl::Status AccessPolicy::Authorize(absl::string_view authorization, AccessRole needed) const {
  std::optional<Digest> operator_digest, agent_digest;
  {
    absl::MutexLock lock(&mu_);
    operator_digest = operator_digest_;
    agent_digest = agent_digest_;
  }
  if (!operator_digest && !agent_digest) return absl::OkStatus();
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        "this coordinator needs a token: pass --token or --token-file (or set SCHEMAGATE_TOKEN)");
  }
  absl::string_view token = authorization;
  if (!absl::StartsWithIgnoreCase(token, "Bearer ")) {
    return absl::UnauthenticatedError("the authorization metadata must be 'Bearer <token>'");
  }
  token.remove_prefix(7);
  token = absl::StripAsciiWhitespace(token);
  const Digest presented = Sha256(token);
  // Both comparisons always run, so the time says nothing about which matched.
  const bool is_operator = operator_digest && SameDigest(presented, *operator_digest);
  const bool is_agent = agent_digest && SameDigest(presented, *agent_digest);
  if (is_operator) return absl::OkStatus();
  if (is_agent) {
    if (needed == AccessRole::kAgent) return absl::OkStatus();
    return absl::PermissionDeniedError(
        "the agent token opens the agent service only; operator calls need the operator token");
  }
  return absl::UnauthenticatedError("the token is not valid for this coordinator");
}

grpc::Status AccessPolicy::Authorize(const grpc::ServerContextBase& context,
                                     AccessRole needed) const {
  absl::string_view authorization;
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find(kAuthorizationMetadata); it != metadata.end()) {
    authorization = absl::string_view(it->second.data(), it->second.size());
  }
  absl::Status status = Authorize(authorization, needed);
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::StatusOr<std::string> ReadTokenFile(absl::string_view flag, const std::string& path) {
  absl::StatusOr<std::string> content = ReadWholeFile(flag, path);
  if (!content.ok()) return content.status();
  const std::string token(absl::StripAsciiWhitespace(*content));
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " is empty; put the token in it (e.g. "
                                       "'openssl rand -hex 32 > ", path, "')"));
  }
  for (char c : token) {
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, ": ", path, " must hold one token of printable ASCII without spaces"));
    }
  }
  return token;
}

absl::StatusOr<std::string> ReadPemFile(absl::string_view flag, const std::string& path) {
  absl::StatusOr<std::string> content = ReadWholeFile(flag, path);
  if (!content.ok()) return content.status();
  if (!absl::StrContains(*content, "-----BEGIN ")) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " is not a PEM file (no '-----BEGIN' line)"));
  }
  return content;
}

namespace {

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};

std::unique_ptr<BIO, BioFree> MemoryBio(const std::string& pem) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The first certificate of `pem`, or null.
std::unique_ptr<X509, X509Free> FirstCertificate(const std::string& pem) {
  auto bio = MemoryBio(pem);
  std::unique_ptr<X509, X509Free> cert(
      bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  ERR_clear_error();
  return cert;
}

}  // namespace

absl::Status CheckCertificateAndKey(absl::string_view cert_flag, const std::string& cert_path,
                                    const std::string& cert_pem, absl::string_view key_flag,
                                    const std::string& key_path, const std::string& key_pem) {
  std::unique_ptr<X509, X509Free> cert = FirstCertificate(cert_pem);
  if (!cert) {
    return absl::InvalidArgumentError(absl::StrCat(
        cert_flag, ": ", cert_path, " holds no PEM certificate ('-----BEGIN CERTIFICATE-----')"));
  }
  auto bio = MemoryBio(key_pem);
  std::unique_ptr<EVP_PKEY, KeyFree> key(
      bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  ERR_clear_error();
  if (!key) {
    return absl::InvalidArgumentError(absl::StrCat(
        key_flag, ": ", key_path,
        " holds no unencrypted PEM private key ('-----BEGIN PRIVATE KEY-----' or similar)"));
  }
  const int matches = X509_check_private_key(cert.get(), key.get());
  ERR_clear_error();
  if (matches != 1) {
    return absl::InvalidArgumentError(absl::StrCat(key_flag, " ", key_path,
                                                   " does not match the certificate of ",
                                                   cert_flag, " ", cert_path));
  }
  return absl::OkStatus();
}

absl::Status CheckCertificateBundle(absl::string_view flag, const std::string& path,
                                    const std::string& pem) {
  if (!FirstCertificate(pem)) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": ", path, " holds no PEM certificate ('-----BEGIN CERTIFICATE-----')"));
  }
  return absl::OkStatus();
}

std::string AddressHost(absl::string_view address) {
  if (absl::ConsumePrefix(&address, "[")) {
    const size_t end = address.find(']');
    return std::string(address.substr(0, end));
  }
  const size_t colon = address.rfind(':');
  // More than one colon without brackets: a bare IPv6 address.
  if (colon == absl::string_view::npos || address.find(':') != colon) {
    return std::string(address);
  }
  return std::string(address.substr(0, colon));
}

bool IsLoopbackHost(absl::string_view host) {
  if (absl::EqualsIgnoreCase(host, "localhost") || host == "::1") return true;
  std::vector<absl::string_view> parts = absl::StrSplit(host, '.');
  if (parts.size() != 4 || parts[0] != "127") return false;
  for (absl::string_view part : parts) {
    int n = 0;
    if (!absl::SimpleAtoi(part, &n) || n < 0 || n > 255) return false;
  }
  return true;
}

}  // namespace schemagate
