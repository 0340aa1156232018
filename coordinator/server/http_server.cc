#include "coordinator/server/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace schemagate {
namespace {

constexpr char kPrometheusText[] = "text/plain; version=0.0.4; charset=utf-8";
// Scrapes and health checks are small GETs; a few threads serve many
// scrapers, and one stalled client holds one thread for at most the timeout.
constexpr int kThreads = 4;
constexpr time_t kTimeoutSeconds = 5;
constexpr size_t kMaxRequestBytes = 64 * 1024;

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& listen,
                                                              HttpRoutes routes,
                                                              const std::string& flag) {
  const size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " '", listen, "' is not host:port (e.g. 0.0.0.0:9090)"));
  }
  std::string host = listen.substr(0, colon);
  if (host.empty()) host = "0.0.0.0";
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);  // [::1]:9090
  }
  auto server = std::make_unique<httplib::Server>();
  server->new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
  server->set_read_timeout(kTimeoutSeconds, 0);
  server->set_write_timeout(kTimeoutSeconds, 0);
  server->set_idle_interval(0, 200000);
  server->set_keep_alive_timeout(kTimeoutSeconds);
  server->set_payload_max_length(kMaxRequestBytes);
  // cpp-httplib sets SO_REUSEPORT by default: a second schemagated on the same
  // address would then share it instead of failing to start.
  server->set_socket_options([](int sock) {
    const int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server->Get("/metrics", [metrics = std::move(routes.metrics)](const httplib::Request&,
                                                                  httplib::Response& res) {
    res.set_content(metrics(), kPrometheusText);
  });
  server->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain; charset=utf-8");
  });
  server->set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 404) {
      res.set_content("schemagated serves /metrics and /healthz\n", "text/plain; charset=utf-8");
    }
  });
  int bound = port;
  if (port == 0) {
    bound = server->bind_to_any_port(host);
  } else if (!server->bind_to_port(host, port)) {
    bound = -1;
  }
  if (bound <= 0) {
    return absl::UnavailableError(
        absl::StrCat(flag, " ", listen,
                     ": cannot listen there (address in use, or not an address of this "
                     "host); pass another host:port"));
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(server), bound));
}

HttpServer::HttpServer(std::unique_ptr<httplib::Server> server, int port)
    : server_(std::move(server)), port_(port) {
  thread_ = std::thread([this] {
    server_->listen_after_bind();
    ended_ = true;
  });
  // cpp-httplib's stop() is lost on a server that has not begun listening:
  // return only once it has (or has already ended), so the destructor ends it.
  while (!server_->is_running() && !ended_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

HttpServer::~HttpServer() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace schemagate
