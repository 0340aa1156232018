#include "coordinator/engine/fake_store.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/base/conninfo.h"
#include "coordinator/base/status_macros.h"

namespace schemagate {
namespace {

constexpr char kLockNotAvailable[] = "55P03";

// PostgreSQL keeps microseconds; durations are stored in milliseconds.
absl::Time Micros(absl::Time t) { return absl::FromUnixMicros(absl::ToUnixMicros(t)); }
absl::Duration Millis(absl::Duration d) { return absl::Milliseconds(absl::ToInt64Milliseconds(d)); }

absl::Status NoBookkeeping() {
  return absl::UnavailableError(
      "bookkeeping query failed: relation \"schemagate.meta\" does not exist (SQLSTATE 42P01)");
}

absl::Status Lost() {
  return absl::AbortedError(
      "lost the run connection (server closed the connection unexpectedly); PostgreSQL rolled "
      "back the open transaction and released the lock; retry the run");
}

}  // namespace

void FakeDatabase::SetStatementHook(FakeStatementHook hook) {
  absl::MutexLock lock(&mu_);
  hook_ = std::move(hook);
}

std::vector<std::string> FakeDatabase::executed() const {
  absl::MutexLock lock(&mu_);
  return executed_;
}

void FakeDatabase::SetUnavailable(bool unavailable) {
  absl::MutexLock lock(&mu_);
  unavailable_ = unavailable;
}

void FakeDatabase::BreakFeeds() {
  absl::MutexLock lock(&mu_);
  for (const auto& weak : feeds_) {
    if (auto feed = weak.lock()) feed->broken = true;
  }
  changed_.SignalAll();
}

void FakeDatabase::SetUserTables(std::vector<std::string> tables) {
  absl::MutexLock lock(&mu_);
  user_tables_ = std::move(tables);
}

void FakeDatabase::NotifyLocked() {
  feeds_.erase(std::remove_if(feeds_.begin(), feeds_.end(),
                              [](const std::weak_ptr<FeedState>& f) { return f.expired(); }),
               feeds_.end());
  for (const auto& weak : feeds_) {
    if (auto feed = weak.lock()) ++feed->pending;
  }
  changed_.SignalAll();
}

void FakeDatabase::AppendEventLocked(EventRecord event) {
  event.id = next_event_id_++;
  event.at = Micros(clock_->Now());
  event.message = RedactSecrets(event.message);
  if (event.duration) event.duration = Millis(*event.duration);
  events_.push_back(std::move(event));
}

DatabaseState FakeDatabase::StateLocked() const {
  DatabaseState state;
  state.run_in_progress = lock_holder_ != 0;
  if (migrations_.empty()) {
    // As PgStore: sorted, at most kUnrecordedTablesNamed named.
    std::vector<std::string> tables = user_tables_;
    std::sort(tables.begin(), tables.end());
    state.unrecorded_table_count = static_cast<int64_t>(tables.size());
    if (tables.size() > kUnrecordedTablesNamed) tables.resize(kUnrecordedTablesNamed);
    state.unrecorded_tables = std::move(tables);
  }
  if (!initialized_) return state;
  state.initialized = true;
  state.run_epoch = run_epoch_;
  state.failure = failure_;
  if (state.failure) state.failure->lock_timeout = false;  // Not a column.
  state.last_event_id = events_.empty() ? 0 : events_.back().id;
  state.hold_above = hold_above_;
  for (const auto& [version, row] : migrations_) {
    state.applied.push_back(row.m);
    state.applied.back().rolling_back &= row.m.dirty;  // as PgStore reads it
  }
  RepeatablesLocked(&state);
  for (const EventRecord& event : events_) {
    if (event.kind != "failure" || event.checksum.empty() || event.version == 0) continue;
    std::vector<std::string>& texts = state.failed_texts[event.version];
    if (std::find(texts.begin(), texts.end(), event.checksum) == texts.end()) {
      texts.push_back(event.checksum);
    }
  }
  const absl::Time now = clock_->Now();
  for (const auto& [id, instance] : instances_) {
    if (instance.lease_expires <= now - absl::Hours(1)) continue;
    (instance.lease_expires > now ? state.live_instances : state.lapsed_instances)
        .push_back(instance);
  }
  return state;
}

FakeStatementResult FakeDatabase::RunStatement(const std::string& text) {
  FakeStatementHook hook;
  {
    absl::MutexLock lock(&mu_);
    hook = hook_;
  }
  FakeStatementResult result = hook ? hook(text) : FakeStatementResult::Ok();
  if (result.kind == FakeStatementResult::Kind::kOk) {
    absl::MutexLock lock(&mu_);
    executed_.push_back(text);
  }
  return result;
}

// One "connection" holding the run lock.
class FakeRunSession : public RunSession {
 public:
  FakeRunSession(FakeDatabase* db, FakeStoreOptions options, int64_t id)
      : db_(db), options_(std::move(options)), id_(id) {}

  ~FakeRunSession() override { Release(); }

  absl::Status EnsureSchema() override {
    absl::MutexLock lock(&db_->mu_);
    RETURN_IF_ERROR(LiveLocked());
    db_->initialized_ = true;
    return absl::OkStatus();
  }

  absl::StatusOr<DatabaseState> ReadState() override {
    absl::MutexLock lock(&db_->mu_);
    RETURN_IF_ERROR(LiveLocked());
    return db_->StateLocked();
  }

  absl::StatusOr<int64_t> BumpEpoch() override {
    absl::MutexLock lock(&db_->mu_);
    RETURN_IF_ERROR(ReadyLocked());
    epoch_ = ++db_->run_epoch_;
    return epoch_;
  }

  absl::Status RunTransactional(const std::vector<SqlStatement>& statements,
                                const StatementLimits&, const StepRecord& record,
                                const StatementObserver& observer,
                                SqlFailure* failure) override {
    const absl::Time start = db_->clock()->Now();
    {
      absl::MutexLock lock(&db_->mu_);
      RETURN_IF_ERROR(ReadyLocked());
      RETURN_IF_ERROR(FenceLocked());
    }
    for (size_t i = 0; i < statements.size(); ++i) {
      if (observer) observer(static_cast<int>(i));
      RETURN_IF_ERROR(Execute(statements, static_cast<int>(i), record, failure));
    }
    absl::MutexLock lock(&db_->mu_);
    RETURN_IF_ERROR(LiveLocked());
    const absl::Duration duration = db_->clock()->Now() - start;
    if (record.repeatable) return db_->CommitRepeatableLocked(record, Millis(duration));
    if (record.up) {
      FakeDatabase::Row& row = db_->migrations_[record.version];
      row.m.version = record.version;
      row.m.name = record.name;
      row.m.checksum = record.checksum;
      row.m.dirty = false;
      row.m.applied_at = Micros(db_->clock()->Now());
      row.m.duration = Millis(duration);
      row.m.applied_by = record.actor;
      row.m.statements_done = static_cast<int>(statements.size());
      row.run_id = record.run_id;
    } else {
      db_->migrations_.erase(record.version);
    }
    db_->AppendEventLocked(StepEvent(record, duration));
    db_->NotifyLocked();
    return absl::OkStatus();
  }

  absl::Status RunNonTransactional(const std::vector<SqlStatement>& statements, int first,
                                   const StatementLimits&, const StepRecord& record,
                                   const StatementObserver& observer,
                                   SqlFailure* failure) override {
    {
      absl::MutexLock lock(&db_->mu_);
      RETURN_IF_ERROR(ReadyLocked());
      RETURN_IF_ERROR(FenceLocked());
    }
    for (size_t i = static_cast<size_t>(std::max(first, 0)); i < statements.size(); ++i) {
      if (observer) observer(static_cast<int>(i));
      RETURN_IF_ERROR(Execute(statements, static_cast<int>(i), record, failure));
      absl::MutexLock lock(&db_->mu_);
      auto it = db_->migrations_.find(record.version);
      if (it != db_->migrations_.end()) it->second.m.statements_done = static_cast<int>(i) + 1;
    }
    return absl::OkStatus();
  }

  absl::Status MarkDirty(const StepRecord& record) override {
    absl::MutexLock lock(&db_->mu_);
    RETURN_IF_ERROR(ReadyLocked());
    auto it = db_->migrations_.find(record.version);
    if (record.up) {
      if (it == db_->migrations_.end()) {
        FakeDatabase::Row row;
        row.m.version = record.version;
        row.m.name = record.name;
        row.m.checksum = record.checksum;
        row.m.applied_at = Micros(db_->clock()->Now());
        row.m.statements_done = 0;
        it = db_->migrations_.emplace(record.version, row).first;
      }
      it->second.m.dirty = true;
      it->second.m.rolling_back = false;
      it->second.m.applied_by = record.actor;
      it->second.run_id = record.run_id;
    } else if (it != db_->migrations_.end()) {
      it->second.m.dirty = true;
      it->second.m.rolling_back = true;
      it->second.m.statements_done = 0;
      it->second.run_id = record.run_id;
    }
    db_->NotifyLocked();
    return absl::OkStatus();
  }

  absl::Status FinishDirty(const StepRecord& record, absl::Duration duration) override {
    absl::MutexLock lock(&db_->mu_);
    RETURN_IF_ERROR(ReadyLocked());
    auto it = db_->migrations_.find(record.version);
    if (record.up) {
      if (it != db_->migrations_.end()) {
        it->second.m.dirty = false;
        it->second.m.applied_at = Micros(db_->clock()->Now());
        it->second.m.duration = Millis(duration);
      }
    } else if (it != db_->migrations_.end()) {
      db_->migrations_.erase(it);
    }
    db_->AppendEventLocked(StepEvent(record, duration));
    db_->NotifyLocked();
    return absl::OkStatus();
  }

  absl::Status SetFailure(const std::optional<SqlFailure>& failure) override {
    absl::MutexLock lock(&db_->mu_);
    RETURN_IF_ERROR(ReadyLocked());
    db_->failure_ = failure;
    if (db_->failure_) db_->failure_->at = Micros(db_->clock()->Now());
    db_->NotifyLocked();
    return absl::OkStatus();
  }

  absl::Status RecordEvent(const EventRecord& event) override {
    absl::MutexLock lock(&db_->mu_);
    RETURN_IF_ERROR(ReadyLocked());
    db_->AppendEventLocked(event);
    db_->NotifyLocked();
    return absl::OkStatus();
  }

  absl::Status RecordSchema(const SchemaRecord& record) override {
    absl::MutexLock lock(&db_->mu_);
    RETURN_IF_ERROR(ReadyLocked());
    SchemaRecord stored = record;
    stored.recorded_at = Micros(db_->clock()->Now());
    db_->schema_record_ = stored;
    return absl::OkStatus();
  }

  absl::Status SetHold(std::optional<int64_t> hold_above) override {
    absl::MutexLock lock(&db_->mu_);
    RETURN_IF_ERROR(ReadyLocked());
    db_->hold_above_ = hold_above;
    db_->NotifyLocked();
    return absl::OkStatus();
  }

  absl::Status MarkApplied(const StepRecord& record, const EventRecord& event) override {
    return RecordAdoption({AdoptedRow{record, false}}, event);
  }

  absl::Status RecordAdoption(const std::vector<AdoptedRow>& rows,
                              const EventRecord& event) override {
    absl::MutexLock lock(&db_->mu_);
    RETURN_IF_ERROR(ReadyLocked());
    for (const auto& [record, dirty] : rows) {
      auto it = db_->migrations_.try_emplace(record.version).first;
      if (it->second.m.version == 0) it->second.m.applied_at = Micros(db_->clock()->Now());
      it->second.m.version = record.version;
      it->second.m.name = record.name;
      it->second.m.checksum = record.checksum;
      it->second.m.dirty = dirty;
      it->second.m.applied_by = record.actor;
      it->second.run_id = record.run_id;
    }
    db_->AppendEventLocked(event);
    db_->NotifyLocked();
    return absl::OkStatus();
  }

  absl::Status DeleteRow(int64_t version, const EventRecord& event) override {
    absl::MutexLock lock(&db_->mu_);
    RETURN_IF_ERROR(ReadyLocked());
    db_->migrations_.erase(version);
    db_->AppendEventLocked(event);
    db_->NotifyLocked();
    return absl::OkStatus();
  }

  // The fake has no catalog: there is never an index.
  absl::StatusOr<IndexLookup> LookUpIndex(const std::string&, const std::string&,
                                          const std::string&) override {
    absl::MutexLock lock(&db_->mu_);
    RETURN_IF_ERROR(LiveLocked());
    return IndexLookup();
  }
  absl::Status DropIndexConcurrently(const IndexLookup&) override {
    absl::MutexLock lock(&db_->mu_);
    return LiveLocked();
  }

  absl::Status Rehearse(const std::vector<RehearsalStep>& steps,
                        std::vector<RehearsalResult>* results) override {
    {
      absl::MutexLock lock(&db_->mu_);
      RETURN_IF_ERROR(LiveLocked());
    }
    for (const RehearsalStep& step : steps) {
      RehearsalResult result;
      result.version = step.version;
      const absl::Time start = db_->clock()->Now();
      StepRecord record;
      record.version = step.version;
      record.name = step.name;
      result.ok = true;
      for (size_t i = 0; i < step.statements->size(); ++i) {
        absl::Status status = Execute(*step.statements, static_cast<int>(i), record,
                                      &result.failure);
        if (absl::IsAborted(status)) return status;
        if (!status.ok()) {
          result.ok = false;
          break;
        }
      }
      result.duration = db_->clock()->Now() - start;
      results->push_back(result);
      if (!result.ok) break;
    }
    return absl::OkStatus();
  }

 private:
  EventRecord StepEvent(const StepRecord& record, absl::Duration duration) const {
    EventRecord event;
    event.kind = record.up ? "apply" : "rollback";
    event.version = record.version;
    event.name = record.name;
    event.run_id = record.run_id;
    event.actor = record.actor;
    event.duration = duration;
    return event;
  }

  // Runs statement `index`; on failure fills `failure` as PgRunSession does.
  absl::Status Execute(const std::vector<SqlStatement>& statements, int index,
                       const StepRecord& record, SqlFailure* failure) {
    FakeStatementResult result = db_->RunStatement(statements[index].text);
    switch (result.kind) {
      case FakeStatementResult::Kind::kOk:
        return absl::OkStatus();
      case FakeStatementResult::Kind::kLoseConnection: {
        absl::MutexLock lock(&db_->mu_);
        LoseLocked();
        return Lost();
      }
      case FakeStatementResult::Kind::kFail:
        break;
    }
    failure->version = record.version;
    failure->name = record.name;
    failure->checksum = record.checksum;
    failure->sqlstate = result.sqlstate;
    failure->lock_timeout = result.sqlstate == kLockNotAvailable;
    failure->message = RedactSecrets(result.message);
    failure->statement_index = index + 1;
    failure->line = statements[index].line;
    failure->at = db_->clock()->Now();
    failure->coordinator_id = options_.coordinator_id;
    return absl::FailedPreconditionError(failure->message);
  }

  absl::Status LiveLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_->mu_) {
    if (lost_ || db_->lock_holder_ != id_) return Lost();
    return absl::OkStatus();
  }
  absl::Status ReadyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_->mu_) {
    RETURN_IF_ERROR(LiveLocked());
    if (!db_->initialized_) return NoBookkeeping();
    return absl::OkStatus();
  }
  absl::Status FenceLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_->mu_) {
    if (db_->run_epoch_ != epoch_) {
      return absl::AbortedError(absl::StrCat(
          "run epoch moved from ", epoch_, " to ", db_->run_epoch_,
          ": another coordinator took over the run (the lock was lost, e.g. on a failover)"));
    }
    return absl::OkStatus();
  }
  void LoseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_->mu_) {
    lost_ = true;
    if (db_->lock_holder_ == id_) db_->lock_holder_ = 0;
    db_->changed_.SignalAll();
  }
  void Release() {
    absl::MutexLock lock(&db_->mu_);
    LoseLocked();
  }

  FakeDatabase* const db_;
  const FakeStoreOptions options_;
  const int64_t id_;
  int64_t epoch_ = -1;
  bool lost_ = false;
};

class FakeChangeFeed : public ChangeFeed {
 public:
  explicit FakeChangeFeed(FakeDatabase* db) : db_(db) {}

  absl::Status Connect() override {
    absl::MutexLock lock(&db_->mu_);
    feed_ = std::make_shared<FakeDatabase::FeedState>();
    db_->feeds_.push_back(feed_);
    return absl::OkStatus();
  }
  bool connected() const override { return feed_ != nullptr; }

  absl::StatusOr<int> Wait(absl::Duration timeout) override {
    if (!feed_) return absl::UnavailableError("not connected");
    absl::MutexLock lock(&db_->mu_);
    const absl::Time deadline = absl::Now() + timeout;
    while (feed_->pending == 0 && !feed_->broken) {
      if (db_->changed_.WaitWithDeadline(&db_->mu_, deadline)) break;
    }
    if (feed_->broken) {
      feed_.reset();
      return absl::UnavailableError("database unavailable: the listen connection broke");
    }
    const int count = feed_->pending;
    feed_->pending = 0;
    return count;
  }

 private:
  FakeDatabase* const db_;
  std::shared_ptr<FakeDatabase::FeedState> feed_;
};

FakeStore::FakeStore(FakeDatabase* db, FakeStoreOptions options)
    : db_(db), options_(std::move(options)) {}

absl::StatusOr<DatabaseState> FakeStore::ReadState() {
  absl::MutexLock lock(&db_->mu_);
  if (db_->unavailable_) return absl::UnavailableError("database unavailable: connection refused");
  return db_->StateLocked();
}

absl::StatusOr<std::vector<EventRecord>> FakeStore::ReadHistory(int limit, int64_t version) {
  absl::MutexLock lock(&db_->mu_);
  std::vector<EventRecord> out;
  for (auto it = db_->events_.rbegin();
       it != db_->events_.rend() && static_cast<int>(out.size()) < limit; ++it) {
    if (version == 0 || it->version == version) out.push_back(*it);
  }
  return out;
}

absl::StatusOr<std::vector<EventRecord>> FakeStore::ReadEventsAfter(int64_t after_id,
                                                                    int limit) {
  absl::MutexLock lock(&db_->mu_);
  std::vector<EventRecord> out;
  for (const EventRecord& e : db_->events_) {
    if (static_cast<int>(out.size()) >= limit) break;
    if (e.id > after_id) out.push_back(e);
  }
  return out;
}

absl::StatusOr<std::optional<SchemaRecord>> FakeStore::ReadSchemaRecord() {
  absl::MutexLock lock(&db_->mu_);
  return db_->schema_record_;
}

absl::StatusOr<std::vector<InstanceRecord>> FakeStore::UpsertInstances(
    const std::vector<InstanceRecord>& instances, absl::Duration ttl) {
  std::vector<InstanceRecord> refused;
  if (instances.empty()) return refused;
  absl::MutexLock lock(&db_->mu_);
  if (!db_->initialized_) return NoBookkeeping();
  const absl::Time now = Micros(db_->clock()->Now());
  for (const InstanceRecord& i : instances) {
    auto it = db_->instances_.find(i.instance_id);
    const bool joined = it == db_->instances_.end() || it->second.lease_expires <= now;
    // A live id held by another agent process (PgStore's rule).
    if (!joined && !i.attach_token.empty() && !it->second.attach_token.empty() &&
        it->second.attach_token != i.attach_token) {
      refused.push_back(i);
      continue;
    }
    InstanceRecord stored = i;
    stored.first_seen = it == db_->instances_.end() ? now : it->second.first_seen;
    stored.last_seen = now;
    stored.lease_expires = now + Millis(ttl);
    db_->instances_[i.instance_id] = stored;
    if (joined) {
      EventRecord event;
      event.kind = "instance_join";
      event.actor = options_.coordinator_id;
      event.message = absl::StrCat(i.instance_id, " ", i.app, " ", i.app_version, " (K=",
                                   i.known_version, ", R=", i.required_version, ")");
      db_->AppendEventLocked(event);
    }
  }
  db_->NotifyLocked();
  return refused;
}

absl::Status FakeStore::RefreshLeases(const std::vector<std::string>& ids, absl::Duration ttl) {
  absl::MutexLock lock(&db_->mu_);
  if (!db_->initialized_) return NoBookkeeping();
  const absl::Time now = Micros(db_->clock()->Now());
  for (const std::string& id : ids) {
    auto it = db_->instances_.find(id);
    if (it == db_->instances_.end()) continue;
    it->second.last_seen = now;
    it->second.lease_expires = now + Millis(ttl);
  }
  for (auto it = db_->instances_.begin(); it != db_->instances_.end();) {
    it = it->second.lease_expires < now - absl::Hours(24) ? db_->instances_.erase(it) : ++it;
  }
  return absl::OkStatus();
}

absl::Status FakeStore::RemoveInstances(const std::vector<std::string>& ids,
                                        const std::string& actor) {
  if (ids.empty()) return absl::OkStatus();
  absl::MutexLock lock(&db_->mu_);
  if (!db_->initialized_) return NoBookkeeping();
  const absl::Time now = Micros(db_->clock()->Now());
  for (const std::string& id : ids) {
    auto it = db_->instances_.find(id);
    if (it == db_->instances_.end() || it->second.lease_expires <= now) continue;
    it->second.lease_expires = now;
    EventRecord event;
    event.kind = "instance_leave";
    event.actor = actor;
    event.message = absl::StrCat(id, " ", it->second.app, " ", it->second.app_version, " exited");
    db_->AppendEventLocked(event);
  }
  db_->NotifyLocked();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RunSession>> FakeStore::BeginRun(const LockWaitOptions& options) {
  int64_t id = 0;
  RETURN_IF_ERROR(WaitForRunLock(options, db_->clock(), [&]() -> absl::StatusOr<bool> {
    absl::MutexLock lock(&db_->mu_);
    if (db_->unavailable_) {
      return absl::UnavailableError("database unavailable: connection refused");
    }
    if (db_->lock_holder_ != 0) return false;
    id = db_->next_session_++;
    db_->lock_holder_ = id;
    return true;
  }));
  return std::unique_ptr<RunSession>(std::make_unique<FakeRunSession>(db_, options_, id));
}

std::unique_ptr<ChangeFeed> FakeStore::NewChangeFeed() {
  return std::make_unique<FakeChangeFeed>(db_);
}

}  // namespace schemagate
