// The coordinator's HTTP endpoint (--http-listen, alias --metrics-listen), on
// Debian's cpp-httplib: GET /metrics (Prometheus text) and GET /healthz.
// A small thread pool answers requests; keep-alive, read and write timeouts
// and a request size limit keep slow or hostile clients from holding it.
#ifndef SCHEMAGATE_COORDINATOR_SERVER_HTTP_SERVER_H_
#define SCHEMAGATE_COORDINATOR_SERVER_HTTP_SERVER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace schemagate {

struct HttpRoutes {
  // The body of GET /metrics.
  std::function<std::string()> metrics;
};

class HttpServer {
 public:
  // `listen` is host:port (port 0: any free port); `flag` names the flag in errors.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& listen,
                                                           HttpRoutes routes,
                                                           const std::string& flag);
  ~HttpServer();
  int port() const { return port_; }

 private:
  HttpServer(std::unique_ptr<httplib::Server> server, int port);

  std::unique_ptr<httplib::Server> server_;
  const int port_;
  std::atomic<bool> ended_{false};
  std::thread thread_;
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SERVER_HTTP_SERVER_H_
