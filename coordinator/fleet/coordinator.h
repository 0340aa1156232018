// The coordinator: the in-memory view of the database that agents are
// answered from, kept fresh by LISTEN/NOTIFY plus a periodic resync, and the
// thread that runs migrations (automatically under --apply=auto, or when an
// operator asks).
//
// Thread-safe. Observers are called on the watcher or runner thread and must
// not block.
#ifndef SCHEMAGATE_COORDINATOR_FLEET_COORDINATOR_H_
#define SCHEMAGATE_COORDINATOR_FLEET_COORDINATOR_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/base/clock.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/engine/readiness.h"
#include "coordinator/engine/runner.h"
#include "coordinator/engine/store.h"

namespace schemagate {

// An immutable picture of what the coordinator knows, shared with readers.
struct Snapshot {
  SchemaView view;
  // Keeps view.set alive while the snapshot is in use (the set is re-read
  // when its directory changes).
  std::shared_ptr<const MigrationSet> set;
  absl::Time refreshed_at;
  uint64_t generation = 0;
};

// Told about every new snapshot, and once about shutdown.
// What an agent's stream is waiting for, for metrics.
struct AgentStreamInfo {
  std::string app;
  std::string app_version;
  // Attach streams belong to running apps; Wait streams to waiting ones.
  bool attached = false;
  // The app's K as answered (0: not known yet).
  int64_t known_version = 0;
  std::optional<ReadinessState> state;
};

class StateObserver {
 public:
  virtual ~StateObserver() = default;
  virtual void OnStateChanged(const std::shared_ptr<const Snapshot>& snapshot) = 0;
  virtual void OnShutdown() = 0;
  // Agent streams describe themselves; other observers return nothing.
  virtual std::optional<AgentStreamInfo> agent_info() { return std::nullopt; }
};

// Upper bounds (seconds) of the run duration histogram; +Inf follows.
inline constexpr double kRunSecondsBuckets[] = {0.05, 0.1, 0.5, 1, 5, 30, 120, 600};

// Counters of this coordinator process, for --metrics-listen. Thread-safe.
struct RunCounters {
  absl::Mutex mu;
  // Finished runs by result: ok, failed, aborted, unavailable, other.
  std::map<std::string, int64_t> runs ABSL_GUARDED_BY(mu);
  int64_t migrations_applied ABSL_GUARDED_BY(mu) = 0;
  int64_t migration_failures ABSL_GUARDED_BY(mu) = 0;
  // Run durations: counts per upper bound of kRunSecondsBuckets (+Inf last).
  std::vector<int64_t> run_buckets ABSL_GUARDED_BY(mu) = std::vector<int64_t>(9, 0);
  double run_seconds_sum ABSL_GUARDED_BY(mu) = 0;
  int64_t run_count ABSL_GUARDED_BY(mu) = 0;
  double lock_wait_seconds ABSL_GUARDED_BY(mu) = 0;
  bool lock_held ABSL_GUARDED_BY(mu) = false;
};

struct CoordinatorOptions {
  std::string coordinator_id = "schemagated";
  bool manual = false;
  // Full re-read of the state even without notifications.
  absl::Duration resync_interval = absl::Seconds(10);
  // Breaking migrations wait this long with no live instance needing the
  // old schema before an automatic run applies them (default: the lease TTL
  // plus 30 s of termination grace).
  absl::Duration breaking_grace = absl::Seconds(60);
  // An attached instance's lease; refreshed every third of it while its
  // Attach stream is open, so a crashed instance stops counting after this.
  absl::Duration lease_ttl = absl::Seconds(30);
  // Reconnect backoff bounds for the database.
  absl::Duration reconnect_min = absl::Milliseconds(200);
  absl::Duration reconnect_max = absl::Seconds(10);
  // Every time decision (leases to refresh, breaking grace, resync, backoff)
  // reads this clock. The threads never sleep on it: they wake on real time
  // (at most every 100 ms; the runner every second) and look at it again,
  // so a ManualClock moves only when a test advances it. Not owned; outlives
  // the coordinator.
  Clock* clock = RealClock::Get();
  RunnerOptions runner;
  // Re-reads the migration set (with the same checks as at start), and a
  // cheap fingerprint of its directory that changes when any file does.
  // Unset: the set given at construction is kept for good.
  std::function<absl::StatusOr<MigrationSet>()> load_set;
  std::function<absl::StatusOr<std::string>()> set_fingerprint;
};

class Coordinator {
 public:
  Coordinator(CoordinatorOptions options, MigrationSet set, std::unique_ptr<Store> store,
              std::unique_ptr<ChangeFeed> feed);
  ~Coordinator();

  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // A local run's start reaches agent and event streams only once the run
  // has lasted this long; a shorter run reaches them as its commits and its
  // end. Longer than the lock, read and plan before a run's first
  // migration (about 130 ms measured), so the held-back fan-out does not
  // land on that migration's commit.
  static constexpr absl::Duration kRunNoticeDelay = absl::Seconds(1);

  // Starts the watcher, runner and worker threads.
  void Start();
  // Stops the threads (an under-way migration finishes first) and tells
  // every observer. Idempotent.
  void Shutdown();

  std::shared_ptr<const Snapshot> snapshot() const;
  ReadinessAnswer Evaluate(const AppTarget& target) const;

  // The answer for `target` in `snapshot`, evaluated once per snapshot for
  // all the streams that share the target (`target_key` = TargetKey(target)):
  // a publish to thousands of waiting streams of a few app versions costs a
  // few evaluations, not thousands (one costs ~46 us with a 1,000-migration
  // set; bench/readiness_bench.cc).
  ReadinessAnswer SharedAnswer(const Snapshot& snapshot, const std::string& target_key,
                               const AppTarget& target) const;
  // A digest of everything EvaluateReadiness reads from a target.
  static std::string TargetKey(const AppTarget& target);

  void AddObserver(std::shared_ptr<StateObserver> observer);
  void RemoveObserver(StateObserver* observer);
  size_t observer_count() const;
  // Every agent stream's description (metrics).
  std::vector<AgentStreamInfo> AgentStreams() const;
  RunCounters& counters() { return counters_; }
  // How long the first pending breaking migration has waited for old
  // instances to go (zero when none waits).
  absl::Duration BlockedBreakingFor() const;

  // Called with true/false whenever database reachability changes.
  void SetHealthCallback(std::function<void(bool serving)> callback);

  // Queues an operator's run on the runner thread. `progress` and `done`
  // are called on that thread.
  using RunDone = std::function<void(const absl::StatusOr<RunOutcome>&)>;
  void SubmitRun(RunRequest request, ProgressSink progress, RunDone done);

  // Queues any run (rollback, repair, …) on the runner thread, so runs of
  // this coordinator never overlap and metrics count them.
  using RunWork = std::function<absl::StatusOr<RunOutcome>(
      Runner& runner, const ProgressSink& progress, const std::atomic<bool>* cancelled)>;
  void SubmitWork(RunWork work, ProgressSink progress, RunDone done);

  // Runs `work` on the worker thread (database reads for operator RPCs).
  void RunOffThread(std::function<void()> work);

  // Asks the watcher to re-read the state now.
  void RequestRefresh();

  // The fleet: an Attach stream (`stream`, any unique key) registered (or
  // lost) an instance. Several streams of one agent process (one
  // attach_token) may carry the same instance id; it leaves when the last
  // ends. `clean` means the agent said goodbye (its app exited): the
  // instance is removed at once; otherwise its lease runs out.
  //
  // An id held by another agent process is refused with ALREADY_EXISTS:
  // at once when a stream of this coordinator holds it under another
  // token, or later, through `on_refused` (called once, on the fleet
  // thread, must not block), when the store finds another process's live
  // lease (a stream to another replica). A refused stream's Detach is a no-op.
  using InstanceRefused = std::function<void(const absl::Status& why)>;
  absl::Status InstanceAttached(const InstanceRecord& instance, const void* stream,
                                InstanceRefused on_refused);
  void InstanceDetached(const std::string& instance_id, const void* stream, bool clean);
  // The message of an ALREADY_EXISTS refusal of `instance_id`.
  std::string InstanceIdTakenMessage(const std::string& instance_id) const;

  // Whether breaking migration `m` may run now, given the state read under
  // the lock: no live instance predates it, for `grace` at least.
  bool BreakingGate(const Migration& m, const DatabaseState& state, absl::Duration grace);

  // Re-reads the migration set if its directory changed since the last
  // look (SIGHUP, before an operator's plan or apply, on every resync). A
  // set that does not load is not installed: the old one stays, and
  // SchemaView::set_error says why until a good one loads. Blocks on file
  // I/O: never call it on a gRPC reaction thread. Thread-safe.
  void ReloadSetIfChanged();

  Store* store() { return store_.get(); }
  // The current migration set.
  std::shared_ptr<const MigrationSet> set() const;
  const CoordinatorOptions& options() const { return options_; }

 private:
  struct Job {
    RunRequest request;
    ProgressSink progress;
    RunDone done;
    // Set for runs other than apply (rollback, repair, baseline, rehearse).
    RunWork work;
  };

  void WatchLoop();
  void RunLoop();
  void WorkLoop();
  void FleetLoop();
  // Ends the streams of instances the store refused (UpsertInstances).
  void Refuse(const std::vector<InstanceRecord>& refused);
  // When observers (agent streams, event streams) hear of a new snapshot.
  enum class Tell {
    kNow,
    // The start of a local run: only once it has lasted kRunNoticeDelay
    // (TellObserversIfDue), so a short run reaches streams as its result
    // alone instead of "migrating" then "ready" (two writes per stream).
    kAfterRunNoticeDelay,
    // Now, unless the start of a local run is still held back: a watcher
    // read then waits for the same moment.
    kUnlessRunNoticePending,
  };
  // Installs a new snapshot and tells observers as `tell` says.
  // `read_runs_ended`: for a snapshot of a database read, RunsEnded() when
  // that read began.
  void Publish(std::shared_ptr<Snapshot> next, std::optional<uint64_t> read_runs_ended,
               Tell tell);
  void Publish(std::shared_ptr<Snapshot> next) { Publish(std::move(next), std::nullopt, Tell::kNow); }
  // Tells every observer of `snapshot`.
  void TellObservers(const std::shared_ptr<const Snapshot>& snapshot);
  // Tells observers of the current snapshot if a held-back run start is due;
  // returns how long until it is due (InfiniteDuration: nothing held back).
  absl::Duration TellObserversIfDue();
  // How many local runs have ended.
  uint64_t RunsEnded() const;
  // Re-publishes the current snapshot with run_in_progress changed.
  void PublishLocalRun(bool running);
  // This coordinator's apply committed `version` (its SQL and its row in one
  // transaction): publishes it now, and keeps it in every snapshot until a
  // database read that began after the run ended is published (a read that
  // began before a commit must not hide it, also once the run is over).
  void PublishCommitted(const MigrationSet& set, int64_t version);
  // Publishes the commits PublishCommitted held back, once kCommitPublishGap
  // has passed since the last commit was published.
  void FlushCommitted();
  bool CommitPublishPending() const;
  static constexpr absl::Duration kCommitPublishGap = absl::Milliseconds(20);
  // A local run is under way and has committed at least one migration.
  bool LocalRunCommitting() const;
  // Whether an automatic run has something to do in `view`.
  bool AutoRunWanted(const SchemaView& view) const;
  // Returns once `d` has passed on options_.clock, or at shutdown; looks
  // at the clock every 100 ms of real time at most.
  void SleepUnlessStopped(absl::Duration d);
  // Sleeps `d` of real time (a wake-up, not a decision), or until shutdown.
  void NapUnlessStopped(absl::Duration d);

  const CoordinatorOptions options_;
  const std::unique_ptr<Store> store_;
  const std::unique_ptr<ChangeFeed> feed_;
  RunCounters counters_;
  std::atomic<bool> stopping_{false};

  // Serialises set re-reads; the fingerprint of the directory last read.
  absl::Mutex reload_mu_;
  std::string set_fingerprint_ ABSL_GUARDED_BY(reload_mu_);

  mutable absl::Mutex snapshot_mu_;
  std::shared_ptr<const MigrationSet> set_ ABSL_GUARDED_BY(snapshot_mu_);
  // Why the last re-read of the set failed ("" when it loaded).
  std::string set_error_ ABSL_GUARDED_BY(snapshot_mu_);
  std::shared_ptr<const Snapshot> snapshot_ ABSL_GUARDED_BY(snapshot_mu_);
  bool local_run_ ABSL_GUARDED_BY(snapshot_mu_) = false;
  // When observers must hear of the current snapshot, which they have not
  // yet (a local run's start held back); InfiniteFuture: they have.
  absl::Time observers_due_ ABSL_GUARDED_BY(snapshot_mu_) = absl::InfiniteFuture();
  // Rows the last local run committed (PublishCommitted), merged into every
  // snapshot until a read that began after it ended is published.
  std::vector<AppliedMigration> run_committed_ ABSL_GUARDED_BY(snapshot_mu_);
  uint64_t runs_ended_ ABSL_GUARDED_BY(snapshot_mu_) = 0;
  // A commit of run_committed_ not yet in a published snapshot; when the
  // last one was published.
  bool commit_publish_pending_ ABSL_GUARDED_BY(snapshot_mu_) = false;
  absl::Time last_commit_publish_ ABSL_GUARDED_BY(snapshot_mu_) = absl::InfinitePast();
  uint64_t generation_ ABSL_GUARDED_BY(snapshot_mu_) = 0;
  std::function<void(bool)> health_callback_ ABSL_GUARDED_BY(snapshot_mu_);
  std::optional<bool> last_health_ ABSL_GUARDED_BY(snapshot_mu_);

  // SharedAnswer's answers for snapshot `answers_generation_`, by target key.
  mutable absl::Mutex answers_mu_;
  mutable uint64_t answers_generation_ ABSL_GUARDED_BY(answers_mu_) = 0;
  mutable absl::flat_hash_map<std::string, ReadinessAnswer> answers_
      ABSL_GUARDED_BY(answers_mu_);

  mutable absl::Mutex observers_mu_;
  absl::flat_hash_map<StateObserver*, std::shared_ptr<StateObserver>> observers_
      ABSL_GUARDED_BY(observers_mu_);
  bool shut_down_ ABSL_GUARDED_BY(observers_mu_) = false;

  absl::Mutex queue_mu_;
  std::deque<Job> jobs_ ABSL_GUARDED_BY(queue_mu_);
  std::deque<std::function<void()>> work_ ABSL_GUARDED_BY(queue_mu_);
  bool wake_runner_ ABSL_GUARDED_BY(queue_mu_) = false;
  bool refresh_requested_ ABSL_GUARDED_BY(queue_mu_) = false;
  bool worker_exited_ ABSL_GUARDED_BY(queue_mu_) = false;
  absl::Time next_auto_attempt_ ABSL_GUARDED_BY(queue_mu_) = absl::InfinitePast();
  absl::Duration auto_backoff_ ABSL_GUARDED_BY(queue_mu_) = absl::Seconds(1);

  // First time each breaking version was seen pending with no blocker.
  mutable absl::Mutex gate_mu_;
  absl::flat_hash_map<int64_t, absl::Time> breaking_clear_since_ ABSL_GUARDED_BY(gate_mu_);
  // First time each breaking version was seen held back by live instances.
  absl::flat_hash_map<int64_t, absl::Time> breaking_blocked_since_ ABSL_GUARDED_BY(gate_mu_);

  struct LocalInstance {
    InstanceRecord record;
    // The open streams of the instance, each with its refusal callback.
    absl::flat_hash_map<const void*, InstanceRefused> streams;
  };
  absl::Mutex fleet_mu_;
  absl::flat_hash_map<std::string, LocalInstance> local_instances_ ABSL_GUARDED_BY(fleet_mu_);
  std::vector<InstanceRecord> pending_joins_ ABSL_GUARDED_BY(fleet_mu_);
  std::vector<std::string> pending_leaves_ ABSL_GUARDED_BY(fleet_mu_);

  std::thread watcher_;
  std::thread runner_thread_;
  std::thread worker_;
  std::thread fleet_;
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_FLEET_COORDINATOR_H_
