// schemagate_bench: the fan-out and check benchmarks (bench/run.sh runs
// them beside the apply, storm and agent measurements). Each result is also
// printed as one `RESULT {json}` line for run.sh to collect.
#include <cstdio>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bench/check.h"
#include "bench/fanout.h"

namespace {

std::string StatsJson(const schemagate::bench::ProcessStats& s) {
  return absl::StrFormat(R"({"rss_mb":%.1f,"peak_rss_mb":%.1f,"threads":%d})", s.rss_mb,
                         s.peak_rss_mb, s.threads);
}

int Fanout(const std::string& admin_url, const std::string& log_dir,
           const std::vector<int>& sizes, int per_channel, int set_size, bool bare) {
  int failures = 0;
  for (int n : sizes) {
    schemagate::bench::FanoutOptions options;
    options.admin_url = admin_url;
    options.log_dir = log_dir;
    options.streams = n;
    options.streams_per_channel = per_channel;
    options.set_size = set_size;
    absl::StatusOr<schemagate::bench::FanoutResult> r =
        bare ? schemagate::bench::RunBareFanout(options) : schemagate::bench::RunFanout(options);
    if (!r.ok()) {
      std::fprintf(stderr, "fanout N=%d: %s\n", n, std::string(r.status().message()).c_str());
      ++failures;
      continue;
    }
    std::printf(
        "fanout%s N=%d (set of %d): commit->READY p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d not ready); "
        "coordinator RSS %.1f MB waiting, peak %.1f MB, %d threads\n",
        bare ? " (bare gRPC)" : "", n, r->set_size, r->latency.p50, r->latency.p99, r->latency.max, r->not_ready, r->waiting.rss_mb,
        r->after.peak_rss_mb, r->waiting.threads);
    std::printf(
        "RESULT {\"bench\":\"%s\",\"n\":%d,\"set_size\":%d,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f,"
        "\"not_ready\":%d,\"open_s\":%.2f,\"coordinator_cpu_s\":%.3f,\"client_cpu_s\":%.3f,\"idle\":%s,\"waiting\":%s,\"after\":%s}\n",
        bare ? "fanout_bare" : "fanout", n, r->set_size, r->latency.p50, r->latency.p99, r->latency.max, r->not_ready,
        r->open_seconds, r->coordinator_cpu_s, r->client_cpu_s, StatsJson(r->idle).c_str(), StatsJson(r->waiting).c_str(), StatsJson(r->after).c_str());
    std::fflush(stdout);
    if (r->not_ready > 0) ++failures;
  }
  return failures == 0 ? 0 : 1;
}

int Check(const std::string& admin_url, const std::string& log_dir,
          const std::vector<int>& in_flight, double seconds, int rounds) {
  schemagate::bench::CheckOptions options;
  options.admin_url = admin_url;
  options.log_dir = log_dir;
  options.in_flight = in_flight;
  options.duration = absl::Seconds(seconds);
  options.rounds = rounds;
  absl::StatusOr<std::vector<schemagate::bench::CheckRow>> rows =
      schemagate::bench::RunCheck(options);
  if (!rows.ok()) {
    std::fprintf(stderr, "check: %s\n", std::string(rows.status().message()).c_str());
    return 1;
  }
  for (const auto& row : *rows) {
    std::printf(
        "check in-flight %d: schemagated %.0f/s (p99 %.2f ms), bare echo %.0f/s (p99 %.2f ms), "
        "ratio %.2f\n",
        row.in_flight, row.coordinator_qps, row.coordinator_p99_ms, row.echo_qps,
        row.echo_p99_ms, row.coordinator_qps / row.echo_qps);
    std::printf(
        "RESULT {\"bench\":\"check\",\"in_flight\":%d,\"coordinator_qps\":%.1f,"
        "\"coordinator_p99_ms\":%.3f,\"echo_qps\":%.1f,\"echo_p99_ms\":%.3f,"
        "\"coordinator_cpu_s\":%.2f,\"echo_cpu_s\":%.2f}\n",
        row.in_flight, row.coordinator_qps, row.coordinator_p99_ms, row.echo_qps,
        row.echo_p99_ms, row.coordinator_cpu_s, row.echo_cpu_s);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // As schemagated does (coordinator/main.cc): no deadlock-detection graph
  // on every lock of Debian's debug-built abseil, so the client side of
  // the fan-out costs what a fleet of agents would.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  CLI::App app{"schemagate benchmarks: fan-out of Wait streams, Check beside a bare echo"};
  app.require_subcommand(1);
  std::string admin_url;
  if (const char* url = std::getenv("SCHEMAGATE_BENCH_DATABASE_URL")) admin_url = url;
  std::string log_dir = "/tmp";

  CLI::App* fanout = app.add_subcommand("fanout", "N Wait streams; commit to READY latency");
  std::vector<int> sizes = {100, 1000, 10000};
  int per_channel = 100;
  int set_size = 1;
  fanout->add_option("--database-url", admin_url, "Admin URL (a database is created per run)")
      ->envname("SCHEMAGATE_BENCH_DATABASE_URL");
  fanout->add_option("--streams", sizes, "Values of N")->delimiter(',');
  fanout->add_option("--streams-per-channel", per_channel, "Wait streams per connection");
  fanout->add_option("--log-dir", log_dir, "Where coordinator logs go");
  fanout->add_option("--set-size", set_size, "Migrations applied before the probe");
  bool bare = false;
  fanout->add_flag("--bare", bare,
                   "The same streams on a bare gRPC server (the echo server), released at once: "
                   "the floor of Debian's gRPC");

  CLI::App* check = app.add_subcommand("check", "Closed-loop Check beside a bare echo");
  std::vector<int> in_flight = {1, 16, 64};
  double seconds = 3;
  int rounds = 2;
  check->add_option("--database-url", admin_url, "Admin URL (a database is created per run)")
      ->envname("SCHEMAGATE_BENCH_DATABASE_URL");
  check->add_option("--in-flight", in_flight, "Calls in flight")->delimiter(',');
  check->add_option("--seconds", seconds, "Measured seconds per level and server");
  check->add_option("--rounds", rounds, "Alternating rounds; the best counts");
  check->add_option("--log-dir", log_dir, "Where server logs go");

  CLI::App* echo = app.add_subcommand("echo-server", "(internal) the bare echo server");
  std::string listen, response_hex;
  echo->add_option("--listen", listen)->required();
  echo->add_option("--response", response_hex)->required();

  CLI::App* wait = app.add_subcommand("wait-serving", "(for run.sh) wait until a server's health is SERVING");
  std::string address;
  double wait_seconds = 30;
  wait->add_option("--address", address)->required();
  wait->add_option("--timeout", wait_seconds, "Seconds");

  CLI11_PARSE(app, argc, argv);
  if (echo->parsed()) return schemagate::bench::ServeEcho(listen, response_hex);
  if (wait->parsed()) {
    absl::Status serving =
        schemagate::bench::WaitUntilServing(address, absl::Seconds(wait_seconds));
    if (!serving.ok()) std::fprintf(stderr, "%s: %s\n", address.c_str(),
                                    std::string(serving.message()).c_str());
    return serving.ok() ? 0 : 1;
  }
  if (admin_url.empty()) {
    std::fprintf(stderr, "set --database-url or SCHEMAGATE_BENCH_DATABASE_URL\n");
    return 2;
  }
  if (fanout->parsed()) return Fanout(admin_url, log_dir, sizes, per_channel, set_size, bare);
  return Check(admin_url, log_dir, in_flight, seconds, rounds);
}
