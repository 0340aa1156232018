#include "coordinator/server/metrics.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace schemagate {
namespace {

constexpr double kRpcBuckets[] = {0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};

std::string Label(absl::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void Help(std::string* out, const char* name, const char* type, const char* help) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

// Whole numbers print in full: versions are 14-digit timestamps, which StrAppend's six
// significant digits would print as 2.02612e+13.
std::string SampleValue(double value) {
  if (value == std::trunc(value) && std::fabs(value) < 9007199254740992.0) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  return absl::StrFormat("%.17g", value);
}

void Gauge(std::string* out, const char* name, const char* help, double value) {
  Help(out, name, "gauge", help);
  absl::StrAppend(out, name, " ", SampleValue(value), "\n");
}

class RpcInterceptor : public grpc::experimental::Interceptor {
 public:
  RpcInterceptor(RpcMetrics* metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)), start_(absl::Now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_->Record(method_, methods->GetSendStatus().error_code(),
                       absl::ToDoubleSeconds(absl::Now() - start_));
    }
    methods->Proceed();
  }

 private:
  RpcMetrics* const metrics_;
  const std::string method_;
  const absl::Time start_;
};

class RpcInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcInterceptorFactory(RpcMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RpcInterceptor(metrics_, info->method() != nullptr ? info->method() : "unknown");
  }

 private:
  RpcMetrics* const metrics_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
RpcMetrics::NewInterceptorFactory() {
  return std::make_unique<RpcInterceptorFactory>(this);
}

void RpcMetrics::Record(const std::string& method, grpc::StatusCode code, double seconds) {
  absl::MutexLock lock(&mu_);
  Series& series = by_method_[method];
  if (series.buckets.empty()) series.buckets.assign(std::size(kRpcBuckets) + 1, 0);
  ++series.by_code[static_cast<int>(code)];
  size_t bucket = 0;
  while (bucket < std::size(kRpcBuckets) && seconds > kRpcBuckets[bucket]) ++bucket;
  ++series.buckets[bucket];
  series.sum += seconds;
  ++series.count;
}

void RpcMetrics::Render(std::string* out) {
  absl::MutexLock lock(&mu_);
  Help(out, "schemagate_rpc_requests_total", "counter", "RPCs answered, by method and code.");
  for (const auto& [method, series] : by_method_) {
    for (const auto& [code, n] : series.by_code) {
      absl::StrAppend(out, "schemagate_rpc_requests_total{method=\"", Label(method),
                      "\",code=\"", code, "\"} ", n, "\n");
    }
  }
  Help(out, "schemagate_rpc_duration_seconds", "histogram",
       "Time from call start to status (streams: their whole life).");
  for (const auto& [method, series] : by_method_) {
    int64_t cumulative = 0;
    for (size_t i = 0; i < series.buckets.size(); ++i) {
      cumulative += series.buckets[i];
      const std::string le =
          i < std::size(kRpcBuckets) ? absl::StrCat(kRpcBuckets[i]) : std::string("+Inf");
      absl::StrAppend(out, "schemagate_rpc_duration_seconds_bucket{method=\"", Label(method),
                      "\",le=\"", le, "\"} ", cumulative, "\n");
    }
    absl::StrAppend(out, "schemagate_rpc_duration_seconds_sum{method=\"", Label(method), "\"} ",
                    SampleValue(series.sum), "\n", "schemagate_rpc_duration_seconds_count{method=\"",
                    Label(method), "\"} ", series.count, "\n");
  }
}

std::string RenderMetrics(Coordinator& coordinator, RpcMetrics* rpc) {
  const std::shared_ptr<const Snapshot> snap = coordinator.snapshot();
  const SchemaView& view = snap->view;
  const std::shared_ptr<const MigrationSet> current = coordinator.set();
  const MigrationSet& set = *current;
  int pending = 0, dirty = 0;
  for (const Migration& m : set.migrations()) pending += view.db.Find(m.version) == nullptr;
  for (const AppliedMigration& row : view.db.applied) dirty += row.dirty;
  const bool failed = view.db.failure && view.db.Find(view.db.failure->version) == nullptr;
  std::string out;
  Gauge(&out, "schemagate_database_up", "1 while the coordinator reaches its database.",
        view.database_available ? 1 : 0);
  Gauge(&out, "schemagate_migrations_pending", "Migrations of the set not applied yet.", pending);
  Gauge(&out, "schemagate_applied_version", "Highest applied version (H).",
        static_cast<double>(view.db.AppliedHead()));
  Gauge(&out, "schemagate_head_version", "Highest version of the coordinator's set.",
        static_cast<double>(set.Head()));
  Gauge(&out, "schemagate_set_failed", "1 while the last run's failure blocks the set.",
        failed ? 1 : 0);
  Gauge(&out, "schemagate_dirty_migrations", "Rows left dirty by a cut no-transaction migration.",
        dirty);
  Gauge(&out, "schemagate_set_conflicts", "Disagreements between the set and the database.",
        static_cast<double>(view.conflicts.size()));
  Gauge(&out, "schemagate_run_in_progress", "1 while any coordinator holds the run lock.",
        view.run_in_progress ? 1 : 0);
  Gauge(&out, "schemagate_live_instances", "Instances of the fleet with a fresh lease.",
        static_cast<double>(view.db.live_instances.size()));
  Gauge(&out, "schemagate_blocked_breaking_seconds",
        "How long the next breaking migration has waited for old instances to go.",
        absl::ToDoubleSeconds(coordinator.BlockedBreakingFor()));

  // Agents on this coordinator by state and app version.
  std::map<std::tuple<std::string, std::string, std::string, std::string>, int> agents;
  for (const AgentStreamInfo& info : coordinator.AgentStreams()) {
    const std::string state = info.state ? ReadinessStateName(*info.state) : "UNKNOWN";
    ++agents[{info.attached ? "attached" : "waiting", state, info.app, info.app_version}];
  }
  Help(&out, "schemagate_agents", "gauge",
       "Agent streams on this coordinator: waiting (Wait) or attached (running apps), by "
       "readiness state and app version.");
  for (const auto& [key, n] : agents) {
    const auto& [stream, state, app, version] = key;
    absl::StrAppend(&out, "schemagate_agents{stream=\"", stream, "\",state=\"", state,
                    "\",app=\"", Label(app), "\",app_version=\"", Label(version), "\"} ", n, "\n");
  }

  RunCounters& c = coordinator.counters();
  {
    absl::MutexLock lock(&c.mu);
    Help(&out, "schemagate_runs_total", "counter", "Runs by this coordinator, by result.");
    for (const auto& [result, n] : c.runs) {
      absl::StrAppend(&out, "schemagate_runs_total{result=\"", result, "\"} ", n, "\n");
    }
    Help(&out, "schemagate_migrations_applied_total", "counter",
         "Migrations applied by this coordinator.");
    absl::StrAppend(&out, "schemagate_migrations_applied_total ", c.migrations_applied, "\n");
    Help(&out, "schemagate_migration_failures_total", "counter",
         "Migrations that failed in runs of this coordinator.");
    absl::StrAppend(&out, "schemagate_migration_failures_total ", c.migration_failures, "\n");
    Gauge(&out, "schemagate_lock_held", "1 while this coordinator holds the run lock.",
          c.lock_held ? 1 : 0);
    Help(&out, "schemagate_lock_wait_seconds_total", "counter",
         "Time this coordinator's runs spent waiting for the run lock.");
    absl::StrAppend(&out, "schemagate_lock_wait_seconds_total ", SampleValue(c.lock_wait_seconds), "\n");
    Help(&out, "schemagate_run_duration_seconds", "histogram", "Duration of runs.");
    int64_t cumulative = 0;
    for (size_t i = 0; i < c.run_buckets.size(); ++i) {
      cumulative += c.run_buckets[i];
      const std::string le = i < std::size(kRunSecondsBuckets)
                                 ? absl::StrCat(kRunSecondsBuckets[i])
                                 : std::string("+Inf");
      absl::StrAppend(&out, "schemagate_run_duration_seconds_bucket{le=\"", le, "\"} ",
                      cumulative, "\n");
    }
    absl::StrAppend(&out, "schemagate_run_duration_seconds_sum ", SampleValue(c.run_seconds_sum), "\n",
                    "schemagate_run_duration_seconds_count ", c.run_count, "\n");
  }
  if (rpc != nullptr) rpc->Render(&out);
  return out;
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen, std::function<std::string()> render) {
  const size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-listen '", listen, "' is not host:port (e.g. 0.0.0.0:9090)"));
  }
  std::string host = listen.substr(0, colon);
  if (host.empty()) host = "0.0.0.0";
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* resolved = nullptr;
  if (getaddrinfo(host.c_str(), listen.substr(colon + 1).c_str(), &hints, &resolved) != 0 ||
      resolved == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("--metrics-listen: cannot resolve ", host));
  }
  const int fd = socket(resolved->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd < 0 || bind(fd, resolved->ai_addr, resolved->ai_addrlen) != 0 || ::listen(fd, 64) != 0) {
    const std::string error = std::strerror(errno);
    freeaddrinfo(resolved);
    if (fd >= 0) close(fd);
    return absl::UnavailableError(absl::StrCat("--metrics-listen ", listen, ": ", error));
  }
  freeaddrinfo(resolved);
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int bound_port =
      bound.ss_family == AF_INET6
          ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
          : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return std::unique_ptr<MetricsServer>(new MetricsServer(fd, bound_port, std::move(render)));
}

MetricsServer::MetricsServer(int fd, int port, std::function<std::string()> render)
    : fd_(fd), port_(port), render_(std::move(render)) {
  thread_ = std::thread([this] { Loop(); });
}

MetricsServer::~MetricsServer() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
  close(fd_);
}

void MetricsServer::Loop() {
  while (!stopping_) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    const int client = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    timeval timeout{2, 0};
    setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    // Read the request head (a scrape is a small GET).
    std::string request;
    char buffer[2048];
    while (request.find("\r\n\r\n") == std::string::npos && request.size() < 16384) {
      const ssize_t n = read(client, buffer, sizeof(buffer));
      if (n <= 0) break;
      request.append(buffer, static_cast<size_t>(n));
    }
    std::string status = "200 OK", type = "text/plain; version=0.0.4; charset=utf-8", body;
    if (request.rfind("GET /metrics", 0) == 0) {
      body = render_();
    } else if (request.rfind("GET /healthz", 0) == 0) {
      body = "ok\n";
    } else {
      status = "404 Not Found";
      body = "schemagated serves /metrics\n";
    }
    const std::string response =
        absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", type,
                     "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
    size_t sent = 0;
    while (sent < response.size()) {
      const ssize_t n = write(client, response.data() + sent, response.size() - sent);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    close(client);
  }
}

}  // namespace schemagate
