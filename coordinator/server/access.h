// Who may call the coordinator: bearer tokens checked in constant time, and
// the small file and address helpers the TLS and token flags need.
//
// Two tokens, each read from its own file: the operator token opens every
// service, the agent token opens the agent service only. With no token
// configured every call is allowed (the default, as before tokens existed).
// The health service is never gated (Kubernetes probes carry no token).
// Tokens travel as gRPC metadata `authorization: Bearer <token>`; they are
// never logged and never echoed in an error.
#ifndef SCHEMAGATE_COORDINATOR_SERVER_ACCESS_H_
#define SCHEMAGATE_COORDINATOR_SERVER_ACCESS_H_

#include <array>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"

namespace schemagate {

// The metadata key clients put the token under (lower case, as HTTP/2 wants).
inline constexpr char kAuthorizationMetadata[] = "authorization";

enum class AccessRole { kAgent, kOperator };

// Equal contents, compared in time that depends on neither content nor
// where they differ (both sides are hashed first, so not on length either).
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

struct AccessTokens {
  // Empty: not configured.
  std::string operator_token;
  std::string agent_token;
};

// Thread-safe: SetTokens may run (SIGHUP) while calls are authorised.
class AccessPolicy {
 public:
  // Open until SetTokens gives a token.
  AccessPolicy() = default;
  explicit AccessPolicy(const AccessTokens& tokens) { SetTokens(tokens); }

  // Replaces the tokens (rotation). Only SHA-256 digests are kept.
  void SetTokens(const AccessTokens& tokens);
  // True when any token is configured (calls need one).
  bool enabled() const;

  // `authorization` is the call's authorization metadata ("" if absent).
  // OK, UNAUTHENTICATED (missing, malformed or unknown token) or
  // PERMISSION_DENIED (the agent token on an operator call).
  absl::Status Authorize(absl::string_view authorization, AccessRole needed) const;
  // The same for a server call, as a gRPC status.
  grpc::Status Authorize(const grpc::ServerContextBase& context, AccessRole needed) const;

 private:
  using Digest = std::array<unsigned char, 32>;
  mutable absl::Mutex mu_;
  std::optional<Digest> operator_digest_ ABSL_GUARDED_BY(mu_);
  std::optional<Digest> agent_digest_ ABSL_GUARDED_BY(mu_);
};

// Reads a token file: surrounding whitespace (a trailing newline) is
// dropped; an unreadable or empty file, or a token with spaces or control
// characters, is INVALID_ARGUMENT naming `flag` and the path (never the
// content).
absl::StatusOr<std::string> ReadTokenFile(absl::string_view flag, const std::string& path);

// Reads a PEM file (certificate, key, CA bundle) named by `flag`; an
// unreadable or empty file is INVALID_ARGUMENT.
absl::StatusOr<std::string> ReadPemFile(absl::string_view flag, const std::string& path);

// Checks PEM text with OpenSSL before gRPC gets it, so that a wrong file is
// a usage error naming the flag and path, not a failed listen or handshake:
// `cert_pem` must hold a certificate (the first one is the leaf), `key_pem`
// a private key, and the key must belong to the leaf. INVALID_ARGUMENT
// otherwise (the message never quotes the file's content).
absl::Status CheckCertificateAndKey(absl::string_view cert_flag, const std::string& cert_path,
                                    const std::string& cert_pem, absl::string_view key_flag,
                                    const std::string& key_path, const std::string& key_pem);
// `pem` must hold at least one certificate (a CA bundle).
absl::Status CheckCertificateBundle(absl::string_view flag, const std::string& path,
                                    const std::string& pem);

// The host part of "host:port", "[v6]:port" or a bare host.
std::string AddressHost(absl::string_view address);
// localhost, 127.0.0.0/8 or ::1: traffic that never leaves the machine.
bool IsLoopbackHost(absl::string_view host);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SERVER_ACCESS_H_
