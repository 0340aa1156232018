#include "bench/bench_support.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/channel.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "pqxx/pqxx"
#include "schemagate/v1/schemagate.grpc.pb.h"

namespace schemagate::bench {
namespace {

std::string RandomSuffix() {
  std::random_device device;
  std::mt19937_64 rng(device());
  return absl::StrCat(rng() % 1000000000000ULL);
}

std::string WithDatabase(const std::string& url, const std::string& database) {
  const size_t scheme = url.find("://");
  const size_t slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  if (slash == std::string::npos) return absl::StrCat(url, "/", database);
  const size_t query = url.find('?', slash);
  return absl::StrCat(url.substr(0, slash + 1), database,
                      query == std::string::npos ? "" : url.substr(query));
}

}  // namespace

double MillisBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

std::string BinaryPath(const std::string& name) {
  if (const char* dir = std::getenv("SCHEMAGATE_BIN_DIR"); dir != nullptr && *dir != '\0') {
    return absl::StrCat(dir, "/", name);
  }
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  return (self.parent_path().parent_path() / name).string();
}

std::string SelfPath() {
  std::error_code error;
  return std::filesystem::read_symlink("/proc/self/exe", error).string();
}

absl::StatusOr<std::string> ServingAddress(const std::string& log_path,
                                           const std::string& marker, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  while (true) {
    std::ifstream in(log_path);
    std::stringstream buffer;
    buffer << in.rdbuf();
    const std::string log = buffer.str();
    const size_t at = log.find(marker);
    const size_t end =
        at == std::string::npos ? at : log.find_first_not_of("0123456789", at + marker.size());
    // A port is complete once the line goes on after it.
    if (end != std::string::npos && end > at + marker.size()) {
      return absl::StrCat("127.0.0.1:", log.substr(at + marker.size(), end - at - marker.size()));
    }
    if (absl::Now() >= until) {
      return absl::DeadlineExceededError(
          absl::StrCat("no \"", marker, "PORT\" in ", log_path, " within ",
                       absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

void RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

Child::Child(const std::vector<std::string>& argv, const std::string& log_path) {
  // Emptied before the fork: a log an earlier child of the same name left
  // would otherwise be read (its dead port) before this child truncates it.
  std::remove(log_path.c_str());
  pid_ = fork();
  if (pid_ == 0) {
    const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
}

Child::~Child() { Stop(); }

bool Child::running() {
  if (reaped_ || pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) reaped_ = true;
  return !reaped_;
}

void Child::Stop(absl::Duration grace) {
  if (!running()) return;
  kill(pid_, SIGTERM);
  const absl::Time until = absl::Now() + grace;
  while (running() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(10));
  if (running()) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    reaped_ = true;
  }
}

ProcessStats ReadProcessStats(pid_t pid) {
  ProcessStats stats;
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key;
    double value = 0;
    fields >> key >> value;
    if (key == "VmRSS:") stats.rss_mb = value / 1024;
    if (key == "VmHWM:") stats.peak_rss_mb = value / 1024;
    if (key == "Threads:") stats.threads = static_cast<int>(value);
  }
  return stats;
}

double CpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

absl::StatusOr<std::unique_ptr<ScratchDatabase>> ScratchDatabase::Create(
    const std::string& admin_url, const std::string& prefix) {
  const std::string name = absl::StrCat(prefix, "_", RandomSuffix());
  try {
    pqxx::connection admin(admin_url);
    pqxx::nontransaction tx(admin);
    tx.exec(absl::StrCat("CREATE DATABASE ", tx.quote_name(name)));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("creating database ", name, ": ", e.what()));
  }
  return std::unique_ptr<ScratchDatabase>(
      new ScratchDatabase(admin_url, name, WithDatabase(admin_url, name)));
}

ScratchDatabase::~ScratchDatabase() {
  try {
    pqxx::connection admin(admin_url_);
    pqxx::nontransaction tx(admin);
    tx.exec(absl::StrCat("DROP DATABASE IF EXISTS ", tx.quote_name(name_), " WITH (FORCE)"));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench: dropping %s: %s\n", name_.c_str(), e.what());
  }
}

ScratchDir::ScratchDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "schemagate-bench.XXXXXX").string();
  path_ = mkdtemp(pattern.data());
}

ScratchDir::~ScratchDir() {
  std::error_code error;
  std::filesystem::remove_all(path_, error);
}

void ScratchDir::Write(const std::string& name, const std::string& content) const {
  std::ofstream(absl::StrCat(path_, "/", name)) << content;
}

absl::StatusOr<std::unique_ptr<CoordinatorProcess>> CoordinatorProcess::Start(
    const std::string& database_url, const std::string& migrations_dir,
    const std::vector<std::string>& extra_args, const std::string& log_path) {
  auto process = std::unique_ptr<CoordinatorProcess>(new CoordinatorProcess());
  // Port 0: the kernel picks a free port, read back from the log.
  std::vector<std::string> argv = {BinaryPath("schemagated"), "--database-url", database_url,
                                   "--migrations-dir", migrations_dir, "--listen",
                                   "127.0.0.1:0"};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  process->child_ = std::make_unique<Child>(argv, log_path);
  absl::StatusOr<std::string> address =
      ServingAddress(log_path, "serving on 127.0.0.1:", absl::Seconds(30));
  absl::Status serving = address.status();
  if (address.ok()) {
    process->address_ = *address;
    serving = WaitUntilServing(process->address_, absl::Seconds(30));
  }
  if (!serving.ok()) {
    return absl::UnavailableError(
        absl::StrCat("schemagated did not serve (log: ", log_path, "): ", serving.message()));
  }
  return process;
}

absl::Status WaitUntilServing(const std::string& address, absl::Duration timeout) {
  // Short reconnect backoff: the server is expected to come up any moment.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
  auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  auto stub = grpc::health::v1::Health::NewStub(channel);
  const absl::Time until = absl::Now() + timeout;
  std::string last = "no answer";
  while (absl::Now() < until) {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Milliseconds(500));
    context.set_wait_for_ready(true);
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    const grpc::Status status = stub->Check(&context, request, &response);
    if (status.ok() && response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return absl::OkStatus();
    }
    last = status.ok() ? "NOT_SERVING" : status.error_message();
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(last);
}

absl::Status ApplyThrough(const std::string& address, int64_t target) {
  auto stub = v1::OperatorService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  SetDeadline(&context, absl::Minutes(5));
  v1::ApplyRequest request;
  request.set_target_version(target);
  request.set_actor("schemagate_bench");
  auto reader = stub->Apply(&context, request);
  v1::RunProgress progress;
  std::string failure;
  while (reader->Read(&progress)) {
    if (progress.kind() == v1::MIGRATION_FAILED) failure = progress.failure().message();
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) return absl::InternalError(absl::StrCat("apply: ", status.error_message()));
  if (!failure.empty()) return absl::InternalError(absl::StrCat("apply failed: ", failure));
  return absl::OkStatus();
}

Percentiles Summarise(std::vector<double> millis) {
  Percentiles p;
  p.count = millis.size();
  if (millis.empty()) return p;
  std::sort(millis.begin(), millis.end());
  auto at = [&](double q) {
    const size_t index = static_cast<size_t>(std::ceil(q * millis.size())) - 1;
    return millis[std::min(index, millis.size() - 1)];
  };
  p.p50 = at(0.50);
  p.p99 = at(0.99);
  p.max = millis.back();
  return p;
}

}  // namespace schemagate::bench
