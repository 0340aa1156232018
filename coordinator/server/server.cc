#include "coordinator/server/server.h"

#include "absl/strings/str_cat.h"
#include "coordinator/base/log.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace schemagate {

namespace {

std::shared_ptr<grpc::ServerCredentials> Credentials(const ServerOptions& options) {
  if (options.tls_cert_pem.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions ssl(
      options.tls_client_ca_pem.empty()
          ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = options.tls_client_ca_pem;
  ssl.pem_key_cert_pairs.push_back({options.tls_key_pem, options.tls_cert_pem});
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

CoordinatorServer::CoordinatorServer(Coordinator* coordinator,
                                     OperatorServiceOptions operator_options,
                                     const ServerOptions& options)
    : coordinator_(coordinator),
      access_(options.access),
      streams_(options.max_streams_per_client),
      agent_service_(coordinator, CallGuards{access_.get(), &streams_}),
      operator_service_(coordinator, std::move(operator_options),
                        CallGuards{access_.get(), &streams_}) {}

CoordinatorServer::~CoordinatorServer() { Shutdown(absl::Seconds(5)); }

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    Coordinator* coordinator, OperatorServiceOptions operator_options, ServerOptions options) {
  std::unique_ptr<CoordinatorServer> server(
      new CoordinatorServer(coordinator, std::move(operator_options), options));
  grpc::EnableDefaultHealthCheckService(true);
  if (options.reflection) grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, Credentials(options), &server->port_);
  builder.RegisterService(&server->agent_service_);
  builder.RegisterService(&server->operator_service_);
  // gRPC sets SO_REUSEPORT by default on Linux: a second schemagated given the same --listen
  // would then share the port and take half the connections instead of failing to start.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options.max_request_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(
      GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.handshake_timeout)));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder.AddChannelArgument(
      GRPC_ARG_MAX_CONNECTION_AGE_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.max_connection_age)));
  builder.AddChannelArgument(
      GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.max_connection_age_grace)));
  if (options.rpc_metrics != nullptr) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(options.rpc_metrics->NewInterceptorFactory());
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", options.listen,
        " (address in use or not local? for TLS: do --tls-cert and --tls-key match?); pass "
        "another --listen host:port"));
  }
  grpc::HealthCheckServiceInterface* health = server->server_->GetHealthCheckService();
  coordinator->SetHealthCallback([health](bool serving) {
    health->SetServingStatus(serving);
    health->SetServingStatus("schemagate.v1.AgentService", serving);
    health->SetServingStatus("schemagate.v1.OperatorService", serving);
  });
  return server;
}

void CoordinatorServer::Shutdown(absl::Duration deadline) {
  if (shut_down_) return;
  shut_down_ = true;
  coordinator_->SetHealthCallback([](bool) {});
  if (server_) server_->GetHealthCheckService()->Shutdown();
  coordinator_->Shutdown();
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(absl::ToInt64Milliseconds(deadline)));
    server_->Wait();
  }
}

}  // namespace schemagate
