// Prometheus metrics: the text exposition format that --http-listen serves
// at GET /metrics (server/http_server.h). Debian 12 packages no Prometheus
// client library, and the format is small enough to write.
#ifndef SCHEMAGATE_COORDINATOR_SERVER_METRICS_H_
#define SCHEMAGATE_COORDINATOR_SERVER_METRICS_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/fleet/coordinator.h"
#include "grpcpp/support/server_interceptor.h"

namespace schemagate {

// Counts RPCs by method and status code, with a latency histogram, through
// a server interceptor. Thread-safe.
class RpcMetrics {
 public:
  // An interceptor factory for grpc::ServerBuilder that records into this.
  // REQUIRES: this outlives the server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewInterceptorFactory();

  void Record(const std::string& method, grpc::StatusCode code, double seconds);
  // Appends the rpc series to `out`.
  void Render(std::string* out);

 private:
  struct Series {
    std::map<int, int64_t> by_code;
    std::vector<int64_t> buckets;
    double sum = 0;
    int64_t count = 0;
  };
  absl::Mutex mu_;
  std::map<std::string, Series> by_method_ ABSL_GUARDED_BY(mu_);
};

// Renders every schemagate series for `coordinator` (and `rpc`, if given).
std::string RenderMetrics(Coordinator& coordinator, RpcMetrics* rpc);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SERVER_METRICS_H_
