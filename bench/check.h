// The check benchmark: closed-loop unary Check against schemagated beside
// the same call against a bare echo server (this binary, `echo-server`),
// which registers the same service with the same server settings and
// answers every Check with a canned copy of the coordinator's own answer.
#ifndef SCHEMAGATE_BENCH_CHECK_H_
#define SCHEMAGATE_BENCH_CHECK_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/bench_support.h"

namespace schemagate::bench {

struct CheckOptions {
  std::string admin_url;
  std::string log_dir = "/tmp";
  std::vector<int> in_flight = {1, 16, 64};
  absl::Duration duration = absl::Seconds(3);
  // Rounds of (coordinator, echo) per in-flight level; the best round of each counts.
  int rounds = 2;
};

struct CheckRow {
  int in_flight = 0;
  double coordinator_qps = 0, echo_qps = 0;
  double coordinator_p99_ms = 0, echo_p99_ms = 0;
  double coordinator_cpu_s = 0, echo_cpu_s = 0;
};

absl::StatusOr<std::vector<CheckRow>> RunCheck(const CheckOptions& options);

// Serves the bare echo AgentService on `listen` until SIGTERM.
// `response_hex` is the serialized Readiness to answer with.
int ServeEcho(const std::string& listen, const std::string& response_hex);

}  // namespace schemagate::bench

#endif  // SCHEMAGATE_BENCH_CHECK_H_
