// The fan-out benchmark (see fanout.cc for what is measured and how).
#ifndef SCHEMAGATE_BENCH_FANOUT_H_
#define SCHEMAGATE_BENCH_FANOUT_H_

#include <string>

#include "absl/status/statusor.h"
#include "bench/bench_support.h"
#include "coordinator/base/status_macros.h"

namespace schemagate::bench {

struct FanoutOptions {
  std::string admin_url;
  std::string log_dir = "/tmp";
  int streams = 100;
  // Streams per channel (= per HTTP/2 connection).
  int streams_per_channel = 100;
  // Migrations applied before the streams open (the probe comes after them).
  int set_size = 1;
};

struct FanoutResult {
  int streams = 0;
  int set_size = 0;
  // Commit (as seen by a LISTEN) to READY on each stream.
  Percentiles latency;
  int not_ready = 0;
  double open_seconds = 0;
  // CPU seconds the coordinator and this process spent from the apply
  // request until every stream was READY.
  double coordinator_cpu_s = 0, client_cpu_s = 0;
  // The coordinator before the streams open, with all of them waiting, and
  // after every READY went out.
  ProcessStats idle, waiting, after;
};

absl::StatusOr<FanoutResult> RunFanout(const FanoutOptions& options);

// The same N Wait streams on a bare gRPC server (schemagate_bench
// echo-server: the AgentService with nothing behind it, on the
// coordinator's server settings), all told READY at once on one thread, as
// the coordinator's Publish does: the floor Debian's gRPC sets. Latency is
// from the release request; "coordinator" figures are the echo server's.
absl::StatusOr<FanoutResult> RunBareFanout(const FanoutOptions& options);

}  // namespace schemagate::bench

#endif  // SCHEMAGATE_BENCH_FANOUT_H_
