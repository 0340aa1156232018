// Publishing snapshots: the watcher's reads, and the commits of this
// coordinator's own run between them (Coordinator::PublishCommitted).
#include <algorithm>
#include <utility>

#include "coordinator/fleet/coordinator.h"

namespace schemagate {

void Coordinator::Publish(std::shared_ptr<Snapshot> next, std::optional<uint64_t> read_runs_ended,
                          Tell tell) {
  std::function<void(bool)> health;
  bool serving = next->view.database_available;
  bool tell_now = true;
  {
    absl::MutexLock lock(&snapshot_mu_);
    const absl::Time now = options_.clock->Now();
    if (tell == Tell::kAfterRunNoticeDelay) {
      observers_due_ = now + kRunNoticeDelay;
      tell_now = false;
    } else if (tell == Tell::kUnlessRunNoticePending && local_run_ &&
               observers_due_ != absl::InfiniteFuture() && now < observers_due_) {
      tell_now = false;
    } else {
      observers_due_ = absl::InfiniteFuture();
    }
    // A read that began after the last local run ended has all its commits.
    if (!local_run_ && read_runs_ended && *read_runs_ended == runs_ended_) {
      run_committed_.clear();
    }
    // A state read before one of this run's commits must not hide it.
    bool merged = false;
    for (const AppliedMigration& row : run_committed_) {
      std::vector<AppliedMigration>& applied = next->view.db.applied;
      auto it = std::lower_bound(
          applied.begin(), applied.end(), row.version,
          [](const AppliedMigration& m, int64_t v) { return m.version < v; });
      if (it != applied.end() && it->version == row.version && !it->dirty) continue;
      // A new row whose checksum is the published set's file adds no
      // conflict and removes none: the conflicts stand, without the pass
      // over every applied row (per commit, that grew with the set).
      const Migration* file = next->view.set ? next->view.set->Find(row.version) : nullptr;
      const bool replaces = it != applied.end() && it->version == row.version;
      if (replaces || file == nullptr || file->checksum != row.checksum) merged = true;
      if (replaces) {
        *it = row;
      } else {
        applied.insert(it, row);
      }
    }
    if (merged) next->view.conflicts = FindConflicts(*next->view.set, next->view.db);
    next->generation = ++generation_;
    next->view.run_in_progress = next->view.run_in_progress || local_run_;
    snapshot_ = next;
    if (!last_health_ || *last_health_ != serving) {
      last_health_ = serving;
      health = health_callback_;
    }
  }
  if (health) health(serving);
  if (tell_now) TellObservers(next);
  if (AutoRunWanted(next->view)) {
    absl::MutexLock lock(&queue_mu_);
    wake_runner_ = true;
  }
}

void Coordinator::TellObservers(const std::shared_ptr<const Snapshot>& snapshot) {
  std::vector<std::shared_ptr<StateObserver>> observers;
  {
    absl::MutexLock lock(&observers_mu_);
    observers.reserve(observers_.size());
    for (auto& [ptr, observer] : observers_) observers.push_back(observer);
  }
  for (auto& observer : observers) observer->OnStateChanged(snapshot);
}

absl::Duration Coordinator::TellObserversIfDue() {
  std::shared_ptr<const Snapshot> due;
  {
    absl::MutexLock lock(&snapshot_mu_);
    if (observers_due_ == absl::InfiniteFuture()) return absl::InfiniteDuration();
    const absl::Duration left = observers_due_ - options_.clock->Now();
    if (left > absl::ZeroDuration()) return left;
    observers_due_ = absl::InfiniteFuture();
    due = snapshot_;
  }
  TellObservers(due);
  return absl::InfiniteDuration();
}

void Coordinator::PublishCommitted(const MigrationSet& set, int64_t version) {
  const Migration* m = set.Find(version);
  if (m == nullptr) return;
  AppliedMigration row;
  row.version = m->version;
  row.name = m->name;
  row.checksum = m->checksum;
  row.applied_at = options_.clock->Now();
  row.applied_by = options_.coordinator_id;
  row.statements_done = static_cast<int>(m->up.statements.size());
  {
    absl::MutexLock lock(&snapshot_mu_);
    if (!local_run_) return;
    run_committed_.push_back(std::move(row));
    commit_publish_pending_ = true;
  }
  FlushCommitted();
}

void Coordinator::FlushCommitted() {
  // A commit is published at once unless another was published less than
  // kCommitPublishGap ago; then the watcher publishes it when the gap has
  // passed (WatchLoop), so a burst of fast migrations costs one snapshot per
  // gap instead of one per migration (each a copy of the whole state).
  std::shared_ptr<Snapshot> next;
  {
    absl::MutexLock lock(&snapshot_mu_);
    const absl::Time now = options_.clock->Now();
    if (!commit_publish_pending_ || now - last_commit_publish_ < kCommitPublishGap) return;
    commit_publish_pending_ = false;
    last_commit_publish_ = now;
    next = std::make_shared<Snapshot>(*snapshot_);
  }
  Publish(std::move(next));
}

bool Coordinator::CommitPublishPending() const {
  absl::MutexLock lock(&snapshot_mu_);
  return commit_publish_pending_;
}

bool Coordinator::LocalRunCommitting() const {
  absl::MutexLock lock(&snapshot_mu_);
  return local_run_ && !run_committed_.empty();
}

void Coordinator::PublishLocalRun(bool running) {
  std::shared_ptr<Snapshot> next;
  {
    absl::MutexLock lock(&snapshot_mu_);
    local_run_ = running;
    if (running) run_committed_.clear();
    next = std::make_shared<Snapshot>(*snapshot_);
    next->view.run_in_progress = running;
  }
  // At the end of a run, commits not yet published are merged into this
  // last snapshot (Publish merges run_committed_). They stay merged until
  // the watcher publishes a read that began after this: one under way now
  // may predate some of them.
  Publish(std::move(next), std::nullopt, running ? Tell::kAfterRunNoticeDelay : Tell::kNow);
  if (running) return;
  absl::MutexLock lock(&snapshot_mu_);
  ++runs_ended_;
  commit_publish_pending_ = false;
}

uint64_t Coordinator::RunsEnded() const {
  absl::MutexLock lock(&snapshot_mu_);
  return runs_ended_;
}

}  // namespace schemagate
