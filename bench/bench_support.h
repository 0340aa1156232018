// What the bench programs share: child processes of the real binaries, a
// database of their own per measurement, the coordinator's RSS and thread
// count from /proc, and percentiles. No GoogleTest here (bench programs run
// outside the test suites).
//
// Not thread-safe unless a function says so.
#ifndef SCHEMAGATE_BENCH_BENCH_SUPPORT_H_
#define SCHEMAGATE_BENCH_BENCH_SUPPORT_H_

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace schemagate::bench {

using Clock = std::chrono::steady_clock;

// Milliseconds between two steady-clock points.
double MillisBetween(Clock::time_point from, Clock::time_point to);

// Where the built binaries are: SCHEMAGATE_BIN_DIR, else the directory of
// this program's parent (bench/ lives one level below the build root).
std::string BinaryPath(const std::string& name);

// This program's own path (/proc/self/exe).
std::string SelfPath();

// The loopback address a child that listened on 127.0.0.1:0 logged as
// "<marker><port>" in `log_path` (e.g. marker "serving on 127.0.0.1:"),
// waiting up to `timeout` for the line.
absl::StatusOr<std::string> ServingAddress(const std::string& log_path,
                                           const std::string& marker, absl::Duration timeout);

// Raises the soft open-file limit to the hard limit (10,000 streams need it).
void RaiseFileLimit();

// A child process, stdout and stderr in `log_path`. Destroying it sends
// SIGTERM and reaps it.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::string& log_path);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  // SIGTERM, then SIGKILL after `grace`; reaps.
  void Stop(absl::Duration grace = absl::Seconds(10));

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
};

// /proc/PID/status figures.
struct ProcessStats {
  double rss_mb = 0;       // VmRSS
  double peak_rss_mb = 0;  // VmHWM
  int threads = 0;
};
ProcessStats ReadProcessStats(pid_t pid);

// User+system CPU seconds of a process so far (/proc/PID/stat).
double CpuSeconds(pid_t pid);

// A database created for one measurement, dropped (with its sessions) after.
class ScratchDatabase {
 public:
  static absl::StatusOr<std::unique_ptr<ScratchDatabase>> Create(const std::string& admin_url,
                                                                 const std::string& prefix);
  ~ScratchDatabase();
  const std::string& url() const { return url_; }

 private:
  ScratchDatabase(std::string admin_url, std::string name, std::string url)
      : admin_url_(std::move(admin_url)), name_(std::move(name)), url_(std::move(url)) {}
  std::string admin_url_;
  std::string name_;
  std::string url_;
};

// A temporary directory (removed with its files on destruction).
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  const std::string& path() const { return path_; }
  void Write(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

// schemagated on a free loopback port, started and waited for until its
// health service says SERVING (the database answers).
class CoordinatorProcess {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinatorProcess>> Start(
      const std::string& database_url, const std::string& migrations_dir,
      const std::vector<std::string>& extra_args, const std::string& log_path);
  const std::string& address() const { return address_; }
  pid_t pid() const { return child_->pid(); }
  void Stop() { child_->Stop(); }

 private:
  std::unique_ptr<Child> child_;
  std::string address_;
};

// Waits until the gRPC health service at `address` (service "") is SERVING.
absl::Status WaitUntilServing(const std::string& address, absl::Duration timeout);

// Asks the coordinator at `address` to apply up to `target` (0: head) and
// waits for the run to end.
absl::Status ApplyThrough(const std::string& address, int64_t target);

// Latency summary of a sample, in milliseconds.
struct Percentiles {
  size_t count = 0;
  double p50 = 0, p99 = 0, max = 0;
};
Percentiles Summarise(std::vector<double> millis);

}  // namespace schemagate::bench

#endif  // SCHEMAGATE_BENCH_BENCH_SUPPORT_H_
