// The coordinator's gRPC server: the agent and operator services, the
// standard health service (SERVING while the database answers) and, on
// request, server reflection. Keepalive and MAX_CONNECTION_AGE are set so
// that long-lived streams notice dead peers and a load balancer can
// rebalance them. With TLS options it serves TLS (or mutual TLS) only; with
// an AccessPolicy holding tokens every call but health needs a token.
#ifndef SCHEMAGATE_COORDINATOR_SERVER_SERVER_H_
#define SCHEMAGATE_COORDINATOR_SERVER_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/server/access.h"
#include "coordinator/server/agent_service.h"
#include "coordinator/fleet/coordinator.h"
#include "coordinator/server/metrics.h"
#include "coordinator/server/operator_service.h"
#include "coordinator/server/request_limits.h"
#include "coordinator/server/stream_quota.h"
#include "grpcpp/server.h"

namespace schemagate {

struct ServerOptions {
  // host:port; port 0 picks a free port (see CoordinatorServer::port()).
  std::string listen = "127.0.0.1:50051";
  bool reflection = false;
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  absl::Duration max_connection_age = absl::Minutes(5);
  absl::Duration max_connection_age_grace = absl::Seconds(30);
  // Largest response message.
  int max_message_bytes = 4 << 20;
  // Largest request message (RESOURCE_EXHAUSTED above it).
  int max_request_bytes = kDefaultMaxRequestBytes;
  // Open Wait, Attach and WatchEvents streams one client host may hold;
  // <= 0: unlimited.
  int max_streams_per_client = kDefaultMaxStreamsPerClient;
  // A connection that has not finished its HTTP/2 (and TLS) handshake
  // within this long is closed (slow or idle clients).
  absl::Duration handshake_timeout = absl::Seconds(10);
  // TLS, as PEM text. Empty certificate: plaintext.
  std::string tls_cert_pem;
  std::string tls_key_pem;
  // Non-empty: mutual TLS, clients need a certificate signed by this CA.
  std::string tls_client_ca_pem;
  // Tokens; nullptr or no token: every call allowed. Shared so the caller
  // can rotate the tokens while the server runs.
  std::shared_ptr<const AccessPolicy> access;
  // Where RPC counts and latencies go; nullptr: not recorded.
  RpcMetrics* rpc_metrics = nullptr;
};

// Thread-safe.
class CoordinatorServer {
 public:
  // Builds and starts the server. REQUIRES: `coordinator` outlives it.
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(
      Coordinator* coordinator, OperatorServiceOptions operator_options, ServerOptions options);
  ~CoordinatorServer();

  // The bound port.
  int port() const { return port_; }

  // Ends every open stream with UNAVAILABLE, stops the coordinator, then
  // the server (in-flight calls get until `deadline`). Idempotent.
  void Shutdown(absl::Duration deadline);

 private:
  CoordinatorServer(Coordinator* coordinator, OperatorServiceOptions operator_options,
                    const ServerOptions& options);

  Coordinator* const coordinator_;
  const std::shared_ptr<const AccessPolicy> access_;
  StreamQuota streams_;
  AgentServiceImpl agent_service_;
  OperatorServiceImpl operator_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SERVER_SERVER_H_
