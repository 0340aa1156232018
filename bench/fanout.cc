// fan-out: N agents waiting (N Wait streams held by this one process with
// the callback client, spread over many channels so each has its own
// connection), then an apply of one trivial migration, and the time from
// that migration's commit to each stream's READY.
//
// "Commit" is taken conservatively as the moment the migration's last
// statement runs: it sends a NOTIFY whose payload is the server's
// clock_timestamp(), and only the bookkeeping row and the COMMIT follow
// (PostgreSQL delivers the NOTIFY once the transaction has committed, which
// tells this program the apply is done). Server and bench share one clock
// (same host), so each latency includes the commit itself.
#include "bench/fanout.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/channel.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "pqxx/pqxx"
#include "schemagate/v1/schemagate.grpc.pb.h"

namespace schemagate::bench {
namespace {

constexpr char kCommitChannel[] = "schemagate_bench_commit";

// Counts of the streams, shared by every reactor. Thread-safe.
class FanoutTally {
 public:
  void Waiting() { waiting_.fetch_add(1); }
  void Ready() { ready_.fetch_add(1); }
  void Done() { done_.fetch_add(1); }
  int waiting() const { return waiting_.load(); }
  int ready() const { return ready_.load(); }
  int done() const { return done_.load(); }

 private:
  std::atomic<int> waiting_{0}, ready_{0}, done_{0};
};

// One waiting agent: a Wait stream for the probe's version. Reactions only
// take a timestamp and count; nothing blocks.
class WaitProbe : public grpc::ClientReadReactor<v1::Readiness> {
 public:
  WaitProbe(v1::AgentService::Stub* stub, int id, int64_t version, FanoutTally* tally)
      : tally_(tally) {
    request_.mutable_target()->set_app("bench");
    request_.mutable_target()->set_known_version(version);
    request_.mutable_target()->set_required_version(version);
    request_.set_instance_id(absl::StrCat("bench-", id));
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
    stub->async()->Wait(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows.
    if (response_.state() == v1::READY) {
      ready_at_ = std::chrono::system_clock::now();
      ready_ = true;
      tally_->Ready();
    } else if (!waiting_) {
      waiting_ = true;
      tally_->Waiting();
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    status_ = status;
    tally_->Done();
  }

  void Cancel() { context_.TryCancel(); }
  // Valid once the stream is done.
  bool ready() const { return ready_; }
  std::chrono::system_clock::time_point ready_at() const { return ready_at_; }

 private:
  FanoutTally* const tally_;
  grpc::ClientContext context_;
  v1::WaitRequest request_;
  v1::Readiness response_;
  bool waiting_ = false;
  bool ready_ = false;
  std::chrono::system_clock::time_point ready_at_;
  grpc::Status status_;
};

// Receives the first NOTIFY on kCommitChannel: the server's clock at the
// probe statement, in microseconds since the epoch.
class CommitListener {
 public:
  explicit CommitListener(const std::string& url) : connection_(url) {
    receiver_ = std::make_unique<Receiver>(connection_, this);
    thread_ = std::thread([this] {
      while (!stop_.load()) connection_.await_notification(0, 20000);
    });
  }
  ~CommitListener() {
    stop_ = true;
    thread_.join();
  }
  std::optional<std::chrono::system_clock::time_point> committed_at() {
    absl::MutexLock lock(&mu_);
    return committed_at_;
  }

 private:
  class Receiver : public pqxx::notification_receiver {
   public:
    Receiver(pqxx::connection_base& c, CommitListener* owner)
        : pqxx::notification_receiver(c, kCommitChannel), owner_(owner) {}
    void operator()(const std::string& payload, int) override {
      const std::chrono::system_clock::time_point at{std::chrono::microseconds(std::stoll(payload))};
      absl::MutexLock lock(&owner_->mu_);
      if (!owner_->committed_at_) owner_->committed_at_ = at;
    }

   private:
    CommitListener* const owner_;
  };

  pqxx::connection connection_;
  std::unique_ptr<Receiver> receiver_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  std::optional<std::chrono::system_clock::time_point> committed_at_ ABSL_GUARDED_BY(mu_);
};

bool WaitFor(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() >= until) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

// N Wait streams on `address`, spread over channels (one connection each),
// every one past its first answer.
struct Streams {
  std::vector<std::unique_ptr<v1::AgentService::Stub>> stubs;
  FanoutTally tally;
  std::vector<std::unique_ptr<WaitProbe>> probes;
  double open_seconds = 0;
  ~Streams() {
    for (auto& p : probes) p->Cancel();
    WaitFor([&] { return tally.done() >= static_cast<int>(probes.size()); }, absl::Seconds(30));
  }
};

absl::Status OpenStreams(const std::string& address, const FanoutOptions& options,
                         int64_t version, Streams* streams) {
  const int channel_count =
      (options.streams + options.streams_per_channel - 1) / options.streams_per_channel;
  for (int i = 0; i < channel_count; ++i) {
    grpc::ChannelArguments args;
    // Distinct arguments and a local subchannel pool: one connection each.
    args.SetInt("schemagate.bench.channel", i);
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    streams->stubs.push_back(v1::AgentService::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
  }
  FanoutTally& tally = streams->tally;
  const Clock::time_point open_start = Clock::now();
  streams->probes.reserve(options.streams);
  for (int i = 0; i < options.streams; ++i) {
    streams->probes.push_back(std::make_unique<WaitProbe>(
        streams->stubs[i % channel_count].get(), i, version, &tally));
  }
  const int n = options.streams;
  if (!WaitFor([&] { return tally.waiting() + tally.done() >= n; }, absl::Seconds(120))) {
    return absl::DeadlineExceededError(
        absl::StrCat("only ", tally.waiting(), " of ", n, " Wait streams got their first answer"));
  }
  if (tally.done() > 0) {
    return absl::InternalError(absl::StrCat(tally.done(), " Wait streams ended before the apply"));
  }
  streams->open_seconds = MillisBetween(open_start, Clock::now()) / 1000;
  absl::SleepFor(absl::Milliseconds(500));  // Let the server settle after the opening burst.
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<FanoutResult> RunFanout(const FanoutOptions& options) {
  RaiseFileLimit();
  ASSIGN_OR_RETURN(std::unique_ptr<ScratchDatabase> db,
                   ScratchDatabase::Create(options.admin_url, "sg_bench_fanout"));
  ScratchDir migrations;
  for (int v = 1; v <= options.set_size; ++v) {
    migrations.Write(absl::StrCat(v, "_base", v, ".up.sql"),
                     absl::StrCat("CREATE TABLE fanout_base", v, " (id int);\n"));
  }
  const int probe_version = options.set_size + 1;
  migrations.Write(absl::StrCat(probe_version, "_probe.up.sql"),
                   absl::StrCat("CREATE TABLE fanout_probe (id int);\n"
                                "SELECT pg_notify('", kCommitChannel,
                                "', (extract(epoch FROM clock_timestamp()) * 1e6)::bigint::text);\n"));
  ASSIGN_OR_RETURN(std::unique_ptr<CoordinatorProcess> coordinator,
                   CoordinatorProcess::Start(db->url(), migrations.path(),
                                             // One client process holds every stream: lift
                                             // the per-client cap (default 4096).
                                             {"--apply", "manual", "--max-streams-per-client", "0"},
                                             absl::StrCat(options.log_dir, "/fanout-",
                                                          options.streams, ".log")));
  // The set first, so the measured run is an ordinary one (bookkeeping exists).
  if (options.set_size > 0) RETURN_IF_ERROR(ApplyThrough(coordinator->address(), options.set_size));
  FanoutResult result;
  result.streams = options.streams;
  result.set_size = options.set_size;
  result.idle = ReadProcessStats(coordinator->pid());

  Streams streams;
  RETURN_IF_ERROR(OpenStreams(coordinator->address(), options, probe_version, &streams));
  result.open_seconds = streams.open_seconds;
  result.waiting = ReadProcessStats(coordinator->pid());
  FanoutTally& tally = streams.tally;
  std::vector<std::unique_ptr<WaitProbe>>& probes = streams.probes;
  const int n = options.streams;

  CommitListener listener(db->url());
  const double coordinator_cpu = CpuSeconds(coordinator->pid());
  const double client_cpu = CpuSeconds(getpid());
  const Clock::time_point apply_start = Clock::now();
  RETURN_IF_ERROR(ApplyThrough(coordinator->address(), probe_version));
  const bool all_ready =
      WaitFor([&] { return tally.ready() >= n; }, absl::Seconds(120));
  result.coordinator_cpu_s = CpuSeconds(coordinator->pid()) - coordinator_cpu;
  if (std::getenv("SCHEMAGATE_BENCH_TRACE") != nullptr) {
    // CLOCK_MONOTONIC seconds, for `perf record -k CLOCK_MONOTONIC` + `perf report --time`.
    std::fprintf(stderr, "fanout window (monotonic s): %.6f,%.6f coordinator pid %d\n",
                 std::chrono::duration<double>(apply_start.time_since_epoch()).count(),
                 std::chrono::duration<double>(Clock::now().time_since_epoch()).count(),
                 coordinator->pid());
  }
  result.client_cpu_s = CpuSeconds(getpid()) - client_cpu;
  result.after = ReadProcessStats(coordinator->pid());
  if (!all_ready) {
    for (auto& p : probes) p->Cancel();
  }
  WaitFor([&] { return tally.done() >= n; }, absl::Seconds(30));
  WaitFor([&] { return listener.committed_at().has_value(); }, absl::Seconds(5));
  const std::optional<std::chrono::system_clock::time_point> committed = listener.committed_at();
  if (!committed) return absl::InternalError("the probe migration's NOTIFY never arrived");
  std::vector<double> latencies;
  latencies.reserve(n);
  for (const auto& p : probes) {
    if (p->ready()) {
      latencies.push_back(
          std::chrono::duration<double, std::milli>(p->ready_at() - *committed).count());
    }
  }
  result.not_ready = n - static_cast<int>(latencies.size());
  result.latency = Summarise(std::move(latencies));
  probes.clear();
  coordinator->Stop();
  return result;
}

absl::StatusOr<FanoutResult> RunBareFanout(const FanoutOptions& options) {
  RaiseFileLimit();
  // The coordinator's READY answer, as it reads for a fresh set of one migration.
  v1::Readiness answer;
  answer.set_state(v1::READY);
  answer.set_applied_version(1);
  answer.set_required_version(1);
  answer.set_known_version(1);
  answer.set_message("schema is at version 1; the app needs 1");
  answer.set_coordinator_id("bench-bare");
  const std::string log = absl::StrCat(options.log_dir, "/fanout-bare-", options.streams, ".log");
  Child echo({SelfPath(), "echo-server", "--listen", "127.0.0.1:0", "--response",
              absl::BytesToHexString(answer.SerializeAsString())},
             log);
  ASSIGN_OR_RETURN(const std::string address,
                   ServingAddress(log, "echo-server serving on 127.0.0.1:", absl::Seconds(30)));
  RETURN_IF_ERROR(WaitUntilServing(address, absl::Seconds(30)));
  FanoutResult result;
  result.streams = options.streams;
  result.set_size = 0;
  result.idle = ReadProcessStats(echo.pid());
  Streams streams;
  RETURN_IF_ERROR(OpenStreams(address, options, 1, &streams));
  result.open_seconds = streams.open_seconds;
  result.waiting = ReadProcessStats(echo.pid());
  const int n = options.streams;

  const double server_cpu = CpuSeconds(echo.pid());
  const double client_cpu = CpuSeconds(getpid());
  const std::chrono::system_clock::time_point released = std::chrono::system_clock::now();
  {
    std::unique_ptr<v1::AgentService::Stub> stub = v1::AgentService::NewStub(
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(60));
    v1::CheckRequest request;
    request.mutable_target()->set_app("bench-release");
    v1::Readiness ignored;
    const grpc::Status status = stub->Check(&context, request, &ignored);
    if (!status.ok()) return absl::InternalError(status.error_message());
  }
  WaitFor([&] { return streams.tally.ready() >= n; }, absl::Seconds(120));
  result.coordinator_cpu_s = CpuSeconds(echo.pid()) - server_cpu;
  result.client_cpu_s = CpuSeconds(getpid()) - client_cpu;
  result.after = ReadProcessStats(echo.pid());
  std::vector<double> latencies;
  latencies.reserve(n);
  for (const auto& p : streams.probes) {
    if (p->ready()) {
      latencies.push_back(std::chrono::duration<double, std::milli>(p->ready_at() - released).count());
    }
  }
  result.not_ready = n - static_cast<int>(latencies.size());
  result.latency = Summarise(std::move(latencies));
  return result;
}

}  // namespace schemagate::bench
