// Client channels to coordinators, shared by the agent and schemagatectl.
#ifndef SCHEMAGATE_AGENT_CHANNEL_H_
#define SCHEMAGATE_AGENT_CHANNEL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace schemagate {

// Splits "host:port,host:port" into addresses (blanks dropped).
std::vector<std::string> SplitCoordinators(absl::string_view list);

// How a client proves itself to coordinators: TLS material (PEM text, read
// by LoadClientSecurity) and the bearer token. Default: plaintext, no token.
struct ClientSecurity {
  bool tls = false;
  // Empty with tls: the system's trusted roots.
  std::string root_certs_pem;
  // Mutual TLS: this client's certificate chain and key (both or neither).
  std::string cert_chain_pem;
  std::string private_key_pem;
  // Sent as "authorization: Bearer <token>" on every call; empty: none.
  std::string token;
};

// The command-line form: file paths and the token (every field optional).
struct ClientSecurityFlags {
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string token;
  std::string token_file;
};

// Reads the files. TLS is on when --tls-ca or --tls-cert is given. Errors
// (unreadable file, cert without key, --token with --token-file) are
// INVALID_ARGUMENT naming the flag, never the token.
absl::StatusOr<ClientSecurity> LoadClientSecurity(const ClientSecurityFlags& flags);

// A warning line when `security` sends a token in clear text to a
// coordinator off this machine; "" otherwise.
std::string CleartextTokenWarning(const ClientSecurity& security,
                                  const std::vector<std::string>& coordinators);

// A channel with client keepalive, so a dead coordinator is noticed while
// a Wait stream is open; TLS and the token as `security` says.
std::shared_ptr<grpc::Channel> NewCoordinatorChannel(const std::string& address,
                                                     const ClientSecurity& security = {});

// Sets the deadline of `context` to now + `timeout`.
void SetDeadline(grpc::ClientContext* context, absl::Duration timeout);

}  // namespace schemagate

#endif  // SCHEMAGATE_AGENT_CHANNEL_H_
