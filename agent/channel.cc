#include "agent/channel.h"

#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "coordinator/server/access.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/client_interceptor.h"

namespace schemagate {
namespace {

// Adds the bearer token to every call of a channel. A client interceptor
// rather than call credentials: gRPC drops call credentials on plaintext
// channels, and a token over loopback without TLS is a supported setup.
class TokenInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit TokenInterceptor(const std::string* header) : header_(header) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({kAuthorizationMetadata, *header_});
    }
    methods->Proceed();
  }

 private:
  const std::string* const header_;
};

class TokenInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(const std::string& token)
      : header_(absl::StrCat("Bearer ", token)) {}

  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new TokenInterceptor(&header_);
  }

 private:
  // Lives as long as the channel (the channel owns the factory).
  const std::string header_;
};

}  // namespace

std::vector<std::string> SplitCoordinators(absl::string_view list) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(list, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty()) out.emplace_back(part);
  }
  return out;
}

absl::StatusOr<ClientSecurity> LoadClientSecurity(const ClientSecurityFlags& flags) {
  ClientSecurity security;
  if (flags.tls_cert.empty() != flags.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together; give both");
  }
  security.tls = !flags.tls_ca.empty() || !flags.tls_cert.empty();
  for (auto [flag, path, out] :
       {std::make_tuple("--tls-ca", &flags.tls_ca, &security.root_certs_pem),
        std::make_tuple("--tls-cert", &flags.tls_cert, &security.cert_chain_pem),
        std::make_tuple("--tls-key", &flags.tls_key, &security.private_key_pem)}) {
    if (path->empty()) continue;
    absl::StatusOr<std::string> pem = ReadPemFile(flag, *path);
    if (!pem.ok()) return pem.status();
    *out = *pem;
  }
  if (!flags.tls_cert.empty()) {
    if (absl::Status checked =
            CheckCertificateAndKey("--tls-cert", flags.tls_cert, security.cert_chain_pem,
                                   "--tls-key", flags.tls_key, security.private_key_pem);
        !checked.ok()) {
      return checked;
    }
  }
  if (!flags.tls_ca.empty()) {
    if (absl::Status checked =
            CheckCertificateBundle("--tls-ca", flags.tls_ca, security.root_certs_pem);
        !checked.ok()) {
      return checked;
    }
  }
  if (!flags.token.empty() && !flags.token_file.empty()) {
    return absl::InvalidArgumentError("give --token or --token-file, not both");
  }
  if (!flags.token_file.empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile("--token-file", flags.token_file);
    if (!token.ok()) return token.status();
    security.token = *token;
  } else {
    const std::string token(absl::StripAsciiWhitespace(flags.token));
    for (char c : token) {
      if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) {
        return absl::InvalidArgumentError(
            "--token (SCHEMAGATE_TOKEN) must be printable ASCII without spaces");
      }
    }
    security.token = token;
  }
  return security;
}

std::string CleartextTokenWarning(const ClientSecurity& security,
                                  const std::vector<std::string>& coordinators) {
  if (security.token.empty() || security.tls) return "";
  for (const std::string& address : coordinators) {
    if (!IsLoopbackHost(AddressHost(address))) {
      return absl::StrCat("sending the token without TLS to ", address,
                          ": anyone on the path can read it; add --tls-ca");
    }
  }
  return "";
}

std::shared_ptr<grpc::Channel> NewCoordinatorChannel(const std::string& address,
                                                     const ClientSecurity& security) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (security.tls) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = security.root_certs_pem;
    ssl.pem_cert_chain = security.cert_chain_pem;
    ssl.pem_private_key = security.private_key_pem;
    credentials = grpc::SslCredentials(ssl);
  }
  if (security.token.empty()) return grpc::CreateCustomChannel(address, credentials, args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<TokenInterceptorFactory>(security.token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(address, credentials, args,
                                                                 std::move(interceptors));
}

void SetDeadline(grpc::ClientContext* context, absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return;
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::microseconds(absl::ToInt64Microseconds(timeout)));
}

}  // namespace schemagate
