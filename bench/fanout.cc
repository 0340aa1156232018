// fan-out: N agents waiting (N Wait streams held by this one process with
// the callback client, spread over many channels so each has its own
// connection), then an apply of one trivial migration, and the time from
// that migration's commit to each stream's READY.
//
// "Commit" is when a LISTEN session of this process receives the NOTIFY the
// migration itself sends: PostgreSQL delivers a transaction's notifications
// only once it has committed, so the clock starts at the commit as any
// client can observe it (a loopback NOTIFY is delivered in well under 1 ms).
#include "bench/fanout.h"

#include <atomic>
#include <cstdio>
#include <functional>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "pqxx/pqxx"
#include "schemagate/v1/schemagate.grpc.pb.h"

namespace schemagate::bench {
namespace {

constexpr char kCommitChannel[] = "schemagate_bench_commit";
constexpr int kProbeVersion = 2;

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

// One waiting agent: a Wait stream for version kProbeVersion. Reactions only
// take a timestamp and count; nothing blocks.
class WaitProbe : public grpc::ClientReadReactor<v1::Readiness> {
 public:
  WaitProbe(v1::AgentService::Stub* stub, int id, FanoutTally* tally) : tally_(tally) {
    request_.mutable_target()->set_app("bench");
    request_.mutable_target()->set_known_version(kProbeVersion);
    request_.mutable_target()->set_required_version(kProbeVersion);
    request_.set_instance_id(absl::StrCat("bench-", id));
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
    stub->async()->Wait(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows.
    if (response_.state() == v1::READY) {
      ready_at_ = Clock::now();
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
  Clock::time_point ready_at() const { return ready_at_; }

 private:
  FanoutTally* const tally_;
  grpc::ClientContext context_;
  v1::WaitRequest request_;
  v1::Readiness response_;
  bool waiting_ = false;
  bool ready_ = false;
  Clock::time_point ready_at_;
  grpc::Status status_;
};

// Records when the first NOTIFY on kCommitChannel arrives.
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
  std::optional<Clock::time_point> committed_at() {
    absl::MutexLock lock(&mu_);
    return committed_at_;
  }

 private:
  class Receiver : public pqxx::notification_receiver {
   public:
    Receiver(pqxx::connection_base& c, CommitListener* owner)
        : pqxx::notification_receiver(c, kCommitChannel), owner_(owner) {}
    void operator()(const std::string&, int) override {
      const Clock::time_point now = Clock::now();
      absl::MutexLock lock(&owner_->mu_);
      if (!owner_->committed_at_) owner_->committed_at_ = now;
    }

   private:
    CommitListener* const owner_;
  };

  pqxx::connection connection_;
  std::unique_ptr<Receiver> receiver_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  std::optional<Clock::time_point> committed_at_ ABSL_GUARDED_BY(mu_);
};

bool WaitFor(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() >= until) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

}  // namespace

absl::StatusOr<FanoutResult> RunFanout(const FanoutOptions& options) {
  RaiseFileLimit();
  ASSIGN_OR_RETURN(std::unique_ptr<ScratchDatabase> db,
                   ScratchDatabase::Create(options.admin_url, "sg_bench_fanout"));
  ScratchDir migrations;
  migrations.Write("1_base.up.sql", "CREATE TABLE fanout_base (id int);\n");
  migrations.Write("2_probe.up.sql",
                   absl::StrCat("CREATE TABLE fanout_probe (id int);\n"
                                "SELECT pg_notify('", kCommitChannel, "', 'committed');\n"));
  ASSIGN_OR_RETURN(std::unique_ptr<CoordinatorProcess> coordinator,
                   CoordinatorProcess::Start(db->url(), migrations.path(), {"--apply", "manual"},
                                             absl::StrCat(options.log_dir, "/fanout-",
                                                          options.streams, ".log")));
  // Version 1 first, so the measured run is an ordinary one (bookkeeping exists).
  RETURN_IF_ERROR(ApplyThrough(coordinator->address(), 1));
  FanoutResult result;
  result.streams = options.streams;
  result.idle = ReadProcessStats(coordinator->pid());

  const int channel_count =
      (options.streams + options.streams_per_channel - 1) / options.streams_per_channel;
  std::vector<std::unique_ptr<v1::AgentService::Stub>> stubs;
  for (int i = 0; i < channel_count; ++i) {
    grpc::ChannelArguments args;
    // Distinct arguments and a local subchannel pool: one connection each.
    args.SetInt("schemagate.bench.channel", i);
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    stubs.push_back(v1::AgentService::NewStub(grpc::CreateCustomChannel(
        coordinator->address(), grpc::InsecureChannelCredentials(), args)));
  }
  FanoutTally tally;
  std::vector<std::unique_ptr<WaitProbe>> probes;
  probes.reserve(options.streams);
  const Clock::time_point open_start = Clock::now();
  for (int i = 0; i < options.streams; ++i) {
    probes.push_back(std::make_unique<WaitProbe>(stubs[i % channel_count].get(), i, &tally));
  }
  const int n = options.streams;
  if (!WaitFor([&] { return tally.waiting() + tally.done() >= n; }, absl::Seconds(120))) {
    for (auto& p : probes) p->Cancel();
    WaitFor([&] { return tally.done() >= n; }, absl::Seconds(30));
    return absl::DeadlineExceededError(
        absl::StrCat("only ", tally.waiting(), " of ", n, " Wait streams got their first answer"));
  }
  if (tally.done() > 0) {
    for (auto& p : probes) p->Cancel();
    WaitFor([&] { return tally.done() >= n; }, absl::Seconds(30));
    return absl::InternalError(absl::StrCat(tally.done(), " Wait streams ended before the apply"));
  }
  result.open_seconds = MillisBetween(open_start, Clock::now()) / 1000;
  absl::SleepFor(absl::Milliseconds(500));  // Let the server settle after the opening burst.
  result.waiting = ReadProcessStats(coordinator->pid());

  CommitListener listener(db->url());
  RETURN_IF_ERROR(ApplyThrough(coordinator->address(), kProbeVersion));
  const bool all_ready =
      WaitFor([&] { return tally.ready() >= n; }, absl::Seconds(120));
  result.after = ReadProcessStats(coordinator->pid());
  if (!all_ready) {
    for (auto& p : probes) p->Cancel();
  }
  WaitFor([&] { return tally.done() >= n; }, absl::Seconds(30));
  const std::optional<Clock::time_point> committed = listener.committed_at();
  if (!committed) return absl::InternalError("the probe migration's NOTIFY never arrived");
  std::vector<double> latencies;
  latencies.reserve(n);
  for (const auto& p : probes) {
    if (p->ready()) latencies.push_back(MillisBetween(*committed, p->ready_at()));
  }
  result.not_ready = n - static_cast<int>(latencies.size());
  result.latency = Summarise(std::move(latencies));
  probes.clear();
  coordinator->Stop();
  return result;
}

}  // namespace schemagate::bench
