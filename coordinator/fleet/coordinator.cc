#include "coordinator/fleet/coordinator.h"


#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/base/log.h"
#include "coordinator/base/sha256.h"

namespace schemagate {
namespace {

absl::Duration Jittered(absl::Duration d) {
  static thread_local std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<double> jitter(0.5, 1.5);
  return d * jitter(rng);
}

}  // namespace

Coordinator::Coordinator(CoordinatorOptions options, MigrationSet set,
                         std::unique_ptr<Store> store, std::unique_ptr<ChangeFeed> feed)
    : options_(std::move(options)),
      store_(std::move(store)),
      feed_(std::move(feed)) {
  auto first = std::make_shared<Snapshot>();
  first->set = std::make_shared<const MigrationSet>(std::move(set));
  first->view.set = first->set.get();
  first->view.manual = options_.manual;
  first->view.permissions = options_.runner.permissions;
  first->view.database_available = false;
  first->view.database_error = "not connected yet";
  if (options_.set_fingerprint) {
    absl::StatusOr<std::string> fingerprint = options_.set_fingerprint();
    absl::MutexLock lock(&reload_mu_);
    if (fingerprint.ok()) set_fingerprint_ = *fingerprint;
  }
  absl::MutexLock lock(&snapshot_mu_);
  set_ = first->set;
  snapshot_ = std::move(first);
}

std::shared_ptr<const MigrationSet> Coordinator::set() const {
  absl::MutexLock lock(&snapshot_mu_);
  return set_;
}

void Coordinator::ReloadSetIfChanged() {
  if (!options_.load_set || !options_.set_fingerprint) return;
  absl::MutexLock reload(&reload_mu_);
  absl::StatusOr<std::string> fingerprint = options_.set_fingerprint();
  if (fingerprint.ok() && *fingerprint == set_fingerprint_) return;
  absl::StatusOr<MigrationSet> loaded = options_.load_set();
  if (fingerprint.ok()) set_fingerprint_ = *fingerprint;
  std::shared_ptr<Snapshot> next;
  {
    absl::MutexLock lock(&snapshot_mu_);
    if (!loaded.ok()) {
      const std::string error = absl::StrCat(
          "the migration set on disk does not load, so the coordinator keeps the one it had "
          "(head ", set_->Head(), "): ", loaded.status().message());
      if (error == set_error_) return;
      set_error_ = error;
      LogError("%s", error);
    } else {
      set_error_.clear();
      set_ = std::make_shared<const MigrationSet>(std::move(*loaded));
      LogInfo("migration set re-read: %d migration(s), head %d", set_->migrations().size(),
              set_->Head());
    }
    next = std::make_shared<Snapshot>(*snapshot_);
    next->set = set_;
    next->view.set = set_.get();
    next->view.set_error = set_error_;
    next->view.conflicts = FindConflicts(*set_, next->view.db);
  }
  // Answers shared per generation were computed against the old set.
  Publish(std::move(next));
}

Coordinator::~Coordinator() { Shutdown(); }

void Coordinator::Start() {
  watcher_ = std::thread([this] { WatchLoop(); });
  runner_thread_ = std::thread([this] { RunLoop(); });
  worker_ = std::thread([this] { WorkLoop(); });
  fleet_ = std::thread([this] { FleetLoop(); });
}

void Coordinator::Shutdown() {
  std::vector<std::shared_ptr<StateObserver>> observers;
  {
    absl::MutexLock lock(&observers_mu_);
    if (shut_down_) return;
    shut_down_ = true;
    for (auto& [ptr, observer] : observers_) observers.push_back(observer);
    observers_.clear();
  }
  stopping_ = true;
  for (auto& observer : observers) observer->OnShutdown();
  {
    absl::MutexLock lock(&queue_mu_);
    wake_runner_ = true;
  }
  if (watcher_.joinable()) watcher_.join();
  if (runner_thread_.joinable()) runner_thread_.join();
  if (worker_.joinable()) worker_.join();
  if (fleet_.joinable()) fleet_.join();
  // Operator runs that never started.
  std::deque<Job> left;
  {
    absl::MutexLock lock(&queue_mu_);
    left.swap(jobs_);
  }
  for (Job& job : left) {
    job.done(absl::UnavailableError("the coordinator is shutting down; retry on another one"));
  }
}

std::shared_ptr<const Snapshot> Coordinator::snapshot() const {
  absl::MutexLock lock(&snapshot_mu_);
  return snapshot_;
}

ReadinessAnswer Coordinator::Evaluate(const AppTarget& target) const {
  return EvaluateReadiness(target, snapshot()->view);
}

ReadinessAnswer Coordinator::SharedAnswer(const Snapshot& snapshot,
                                          const std::string& target_key,
                                          const AppTarget& target) const {
  // Distinct targets kept per snapshot; beyond this, answers are not shared.
  constexpr size_t kMaxSharedAnswers = 4096;
  {
    absl::MutexLock lock(&answers_mu_);
    if (answers_generation_ == snapshot.generation) {
      auto it = answers_.find(target_key);
      if (it != answers_.end()) return it->second;
    }
  }
  ReadinessAnswer answer = EvaluateReadiness(target, snapshot.view);
  absl::MutexLock lock(&answers_mu_);
  if (snapshot.generation > answers_generation_) {
    answers_.clear();
    answers_generation_ = snapshot.generation;
  }
  if (snapshot.generation == answers_generation_ && answers_.size() < kMaxSharedAnswers) {
    answers_.emplace(target_key, answer);
  }
  return answer;
}

std::string Coordinator::TargetKey(const AppTarget& target) {
  // Length-prefixed, so that no two targets serialise alike.
  std::string text = absl::StrCat(target.app.size(), ":", target.app, target.app_version.size(),
                                  ":", target.app_version, ";", target.known_version, ";",
                                  target.required_version, ";");
  for (const auto& [version, checksum] : target.checksums) {
    absl::StrAppend(&text, version, "=", checksum.size(), ":", checksum, ";");
  }
  absl::StrAppend(&text, "r;");  // the repeatables, after every version's
  for (const auto& [name, checksum] : target.repeatable_checksums) {
    absl::StrAppend(&text, name.size(), ":", name, "=", checksum.size(), ":", checksum, ";");
  }
  const Sha256Digest digest = Sha256(text);
  return std::string(reinterpret_cast<const char*>(digest.data()), digest.size());
}

void Coordinator::AddObserver(std::shared_ptr<StateObserver> observer) {
  {
    absl::MutexLock lock(&observers_mu_);
    if (!shut_down_) {
      observers_[observer.get()] = observer;
      return;
    }
  }
  observer->OnShutdown();
}

void Coordinator::RemoveObserver(StateObserver* observer) {
  absl::MutexLock lock(&observers_mu_);
  observers_.erase(observer);
}

size_t Coordinator::observer_count() const {
  absl::MutexLock lock(&observers_mu_);
  return observers_.size();
}

void Coordinator::SetHealthCallback(std::function<void(bool)> callback) {
  bool serving;
  {
    absl::MutexLock lock(&snapshot_mu_);
    health_callback_ = callback;
    serving = snapshot_->view.database_available;
    last_health_ = serving;
  }
  callback(serving);
}

void Coordinator::SubmitRun(RunRequest request, ProgressSink progress, RunDone done) {
  if (stopping_) {
    done(absl::UnavailableError("the coordinator is shutting down; retry on another one"));
    return;
  }
  absl::MutexLock lock(&queue_mu_);
  jobs_.push_back(Job{std::move(request), std::move(progress), std::move(done), RunWork()});
  wake_runner_ = true;
}

void Coordinator::SubmitWork(RunWork work, ProgressSink progress, RunDone done) {
  if (stopping_) {
    done(absl::UnavailableError("the coordinator is shutting down; retry on another one"));
    return;
  }
  absl::MutexLock lock(&queue_mu_);
  Job job;
  job.work = std::move(work);
  job.progress = std::move(progress);
  job.done = std::move(done);
  jobs_.push_back(std::move(job));
  wake_runner_ = true;
}

void Coordinator::RunOffThread(std::function<void()> work) {
  {
    absl::MutexLock lock(&queue_mu_);
    if (!worker_exited_) {
      work_.push_back(std::move(work));
      return;
    }
  }
  work();  // Only during shutdown, after the worker has gone.
}

void Coordinator::RequestRefresh() {
  absl::MutexLock lock(&queue_mu_);
  refresh_requested_ = true;
}

void Coordinator::SleepUnlessStopped(absl::Duration d) {
  Clock* clock = options_.clock;
  const absl::Time until = clock->Now() + d;
  while (!stopping_) {
    const absl::Duration left = until - clock->Now();
    if (left <= absl::ZeroDuration()) return;
    absl::SleepFor(std::min(absl::Milliseconds(100), left));
  }
}

void Coordinator::NapUnlessStopped(absl::Duration d) {
  const absl::Time until = absl::Now() + d;
  while (!stopping_ && absl::Now() < until) {
    absl::SleepFor(std::min(absl::Milliseconds(100), until - absl::Now()));
  }
}

void Coordinator::WatchLoop() {
  Clock* const clock = options_.clock;
  absl::Duration backoff = options_.reconnect_min;
  bool was_available = false;
  auto publish_unavailable = [&](const std::string& why) {
    if (was_available) LogWarning("database unavailable: %s; reconnecting", why);
    was_available = false;
    std::shared_ptr<Snapshot> next;
    {
      absl::MutexLock lock(&snapshot_mu_);
      next = std::make_shared<Snapshot>(*snapshot_);
    }
    const bool changed =
        next->view.database_available || next->view.database_error != why;
    next->view.database_available = false;
    next->view.database_error = why;
    next->view.run_in_progress = false;
    if (changed) Publish(std::move(next));
    SleepUnlessStopped(Jittered(backoff));
    backoff = std::min(backoff * 2, options_.reconnect_max);
  };
  while (!stopping_) {
    if (!feed_->connected()) {
      absl::Status connected = feed_->Connect();
      if (!connected.ok()) {
        publish_unavailable(std::string(connected.message()));
        continue;
      }
    }
    // The next resync is due an interval after this read began, not after it
    // was published: time that passes while reading (or a clock a test moves
    // meanwhile) counts toward it.
    const absl::Time read_at = clock->Now();
    const uint64_t runs_ended = RunsEnded();
    absl::StatusOr<DatabaseState> state = store_->ReadState();
    if (!state.ok()) {
      publish_unavailable(std::string(state.status().message()));
      continue;
    }
    if (!was_available) LogInfo("database reachable; schema at version %d", state->AppliedHead());
    was_available = true;
    backoff = options_.reconnect_min;
    auto next = std::make_shared<Snapshot>();
    {
      absl::MutexLock lock(&snapshot_mu_);
      next->set = set_;
      next->view.set_error = set_error_;
    }
    next->view.set = next->set.get();
    next->view.manual = options_.manual;
    next->view.permissions = options_.runner.permissions;
    next->view.database_available = true;
    next->view.run_in_progress = state->run_in_progress;
    next->view.conflicts = FindConflicts(*next->set, *state);
    next->view.db = std::move(*state);
    next->refreshed_at = clock->Now();
    Publish(std::move(next), runs_ended, Tell::kUnlessRunNoticePending);

    const absl::Time resync_at = read_at + options_.resync_interval;
    // While this coordinator's own run commits migrations, the runner
    // publishes each commit itself (PublishCommitted), so the NOTIFYs of
    // that run re-read the whole state at most every kRunRefreshGap instead
    // of once per migration (which cost more database work than the run).
    constexpr absl::Duration kRunRefreshGap = absl::Milliseconds(50);
    const absl::Time refresh_not_before = clock->Now() + kRunRefreshGap;
    bool notified_earlier = false;
    while (!stopping_) {
      {
        absl::MutexLock lock(&queue_mu_);
        if (refresh_requested_) {
          refresh_requested_ = false;
          break;
        }
      }
      const absl::Duration left = resync_at - clock->Now();
      if (left <= absl::ZeroDuration()) {
        ReloadSetIfChanged();  // a file fixed in place (a mounted volume, a ConfigMap)
        break;
      }
      const bool may_refresh = !LocalRunCommitting() || clock->Now() >= refresh_not_before;
      if (notified_earlier && may_refresh) break;
      FlushCommitted();
      absl::Duration wait = std::min({left, absl::Milliseconds(100), TellObserversIfDue()});
      if (CommitPublishPending()) wait = std::min(wait, kCommitPublishGap);
      if (notified_earlier) {
        wait = std::min(wait, std::max(refresh_not_before - clock->Now(), absl::Milliseconds(1)));
      }
      absl::StatusOr<int> notified = feed_->Wait(wait);
      if (!notified.ok()) break;
      if (*notified > 0) {
        if (!LocalRunCommitting() || clock->Now() >= refresh_not_before) break;
        notified_earlier = true;
      }
    }
  }
}

bool Coordinator::AutoRunWanted(const SchemaView& view) const {
  if (options_.manual || !view.database_available) return false;
  PlanRequest request = AutomaticRequest();
  request.permissions = view.permissions;
  request.breaking_gate = [this](const Migration& m, const DatabaseState& state) {
    return const_cast<Coordinator*>(this)->BreakingGate(m, state, options_.breaking_grace);
  };
  const RunPlan plan = PlanRun(*view.set, view.db, request, StepDefaults());
  return !plan.steps.empty() || !plan.repeatables.empty();
}

void Coordinator::RunLoop() {
  Clock* const clock = options_.clock;
  while (!stopping_) {
    Job job;
    bool have_job = false;
    bool try_auto = false;
    {
      absl::MutexLock lock(&queue_mu_);
      queue_mu_.AwaitWithTimeout(
          absl::Condition(
              +[](Coordinator* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->queue_mu_) {
                return c->stopping_.load() || !c->jobs_.empty() || c->wake_runner_;
              },
              this),
          absl::Seconds(1));
      if (stopping_) break;
      wake_runner_ = false;
      if (!jobs_.empty()) {
        job = std::move(jobs_.front());
        jobs_.pop_front();
        have_job = true;
      } else {
        try_auto = clock->Now() >= next_auto_attempt_;
      }
    }
    if (!have_job) {
      if (!try_auto || !AutoRunWanted(snapshot()->view)) continue;
      job.request.actor = options_.coordinator_id;
      job.request.respect_hold = true;
      job.request.breaking_gate = [this](const Migration& m, const DatabaseState& state) {
        return BreakingGate(m, state, options_.breaking_grace);
      };
    }
    // An operator's run uses the set on disk now (a file fixed in place).
    if (have_job) ReloadSetIfChanged();
    const std::shared_ptr<const MigrationSet> set = this->set();
    Runner runner(store_.get(), set.get(), options_.runner);
    PublishLocalRun(true);
    const absl::Time run_start = clock->Now();
    // Count lock waits and applies for metrics, then pass progress on.
    const bool applying = !job.work;  // Apply or an automatic run (not rehearse, rollback…)
    ProgressSink progress = [this, clock, sink = job.progress, run_start, applying,
                             &set](const RunEvent& e) {
      if (applying && e.kind == RunEvent::Kind::kMigrationFinished) {
        PublishCommitted(*set, e.version);
      }
      {
        absl::MutexLock lock(&counters_.mu);
        if (e.kind == RunEvent::Kind::kLockAcquired) {
          counters_.lock_wait_seconds += absl::ToDoubleSeconds(clock->Now() - run_start);
          counters_.lock_held = true;
        } else if (e.kind == RunEvent::Kind::kMigrationFinished) {
          ++counters_.migrations_applied;
        } else if (e.kind == RunEvent::Kind::kMigrationFailed) {
          ++counters_.migration_failures;
        }
      }
      if (sink) sink(e);
    };
    absl::StatusOr<RunOutcome> outcome = job.work ? job.work(runner, progress, &stopping_)
                                                  : runner.Apply(job.request, progress, &stopping_);
    {
      absl::MutexLock lock(&counters_.mu);
      counters_.lock_held = false;
      const char* result = outcome.ok()                                  ? "ok"
                           : absl::IsFailedPrecondition(outcome.status()) ? "failed"
                           : absl::IsAborted(outcome.status())            ? "aborted"
                           : absl::IsUnavailable(outcome.status())        ? "unavailable"
                                                                          : "other";
      ++counters_.runs[result];
      const double seconds = absl::ToDoubleSeconds(clock->Now() - run_start);
      size_t bucket = 0;
      while (bucket < std::size(kRunSecondsBuckets) && seconds > kRunSecondsBuckets[bucket]) {
        ++bucket;
      }
      ++counters_.run_buckets[bucket];
      counters_.run_seconds_sum += seconds;
      ++counters_.run_count;
    }
    PublishLocalRun(false);
    RequestRefresh();
    if (have_job) {
      job.done(outcome);
      continue;
    }
    absl::MutexLock lock(&queue_mu_);
    if (outcome.ok()) {
      auto_backoff_ = absl::Seconds(1);
      next_auto_attempt_ = absl::InfinitePast();
    } else {
      const absl::Status& status = outcome.status();
      if (absl::IsFailedPrecondition(status)) {
        LogError("automatic run failed: %s", status.message());
      } else if (!absl::IsCancelled(status)) {
        LogWarning("automatic run stopped: %s; retrying in %s", status.message(),
                   absl::FormatDuration(auto_backoff_));
      }
      next_auto_attempt_ = clock->Now() + Jittered(auto_backoff_);
      auto_backoff_ = std::min(auto_backoff_ * 2, absl::Seconds(60));
    }
  }
}

void Coordinator::WorkLoop() {
  while (true) {
    std::function<void()> work;
    {
      absl::MutexLock lock(&queue_mu_);
      queue_mu_.AwaitWithTimeout(
          absl::Condition(
              +[](Coordinator* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->queue_mu_) {
                return c->stopping_.load() || !c->work_.empty();
              },
              this),
          absl::Milliseconds(500));
      if (work_.empty()) {
        if (stopping_) {
          worker_exited_ = true;
          return;
        }
        continue;
      }
      work = std::move(work_.front());
      work_.pop_front();
    }
    work();
  }
}

}  // namespace schemagate
