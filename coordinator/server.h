// The coordinator's gRPC server: the agent and operator services, the
// standard health service (SERVING while the database answers) and, on
// request, server reflection. Keepalive and MAX_CONNECTION_AGE are set so
// that long-lived streams notice dead peers and a load balancer can
// rebalance them.
#ifndef SCHEMAGATE_COORDINATOR_SERVER_H_
#define SCHEMAGATE_COORDINATOR_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/agent_service.h"
#include "coordinator/coordinator.h"
#include "coordinator/metrics.h"
#include "coordinator/operator_service.h"
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
  int max_message_bytes = 4 << 20;
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
  CoordinatorServer(Coordinator* coordinator, OperatorServiceOptions operator_options);

  Coordinator* const coordinator_;
  AgentServiceImpl agent_service_;
  OperatorServiceImpl operator_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SERVER_H_
