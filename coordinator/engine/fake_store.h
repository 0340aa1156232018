// An in-memory Store, RunSession and ChangeFeed with PgStore's bookkeeping
// semantics, for unit tests of the runner and the coordinator. SQL does not
// run: each statement goes to FakeDatabase's statement hook, which can fail
// it (an SQLSTATE and a message) or cut the run's connection.
//
// Several FakeStores on one FakeDatabase model coordinator replicas on one
// PostgreSQL database: one run lock, one set of tables, one channel.
#ifndef SCHEMAGATE_COORDINATOR_ENGINE_FAKE_STORE_H_
#define SCHEMAGATE_COORDINATOR_ENGINE_FAKE_STORE_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "coordinator/base/clock.h"
#include "coordinator/engine/store.h"

namespace schemagate {

// What the statement hook decides for one statement.
struct FakeStatementResult {
  enum class Kind { kOk, kFail, kLoseConnection };
  Kind kind = Kind::kOk;
  std::string sqlstate;
  std::string message;

  static FakeStatementResult Ok() { return {}; }
  static FakeStatementResult Fail(std::string sqlstate, std::string message) {
    return {Kind::kFail, std::move(sqlstate), std::move(message)};
  }
  static FakeStatementResult LoseConnection() { return {Kind::kLoseConnection, "", ""}; }
};

using FakeStatementHook = std::function<FakeStatementResult(const std::string& text)>;

// The shared "database". Thread-safe.
class FakeDatabase {
 public:
  explicit FakeDatabase(Clock* clock = RealClock::Get()) : clock_(clock) {}

  Clock* clock() const { return clock_; }
  // Every statement of RunTransactional/RunNonTransactional/Rehearse goes
  // here; unset, every statement succeeds.
  void SetStatementHook(FakeStatementHook hook);
  // Statements the hook let through (committed or not), in order.
  std::vector<std::string> executed() const;
  // Makes every later BeginRun fail with UNAVAILABLE (database down).
  void SetUnavailable(bool unavailable);
  // Breaks every connected ChangeFeed (its next Wait is UNAVAILABLE).
  void BreakFeeds();
  // Tables made outside schemagate ("public.users"), as another tool left them.
  void SetUserTables(std::vector<std::string> tables);

 private:
  friend class FakeStore;
  friend class FakeRunSession;
  friend class FakeChangeFeed;

  struct FeedState {
    int pending = 0;
    bool broken = false;
  };
  struct Row {
    AppliedMigration m;
    std::string run_id;
  };

  void NotifyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AppendEventLocked(EventRecord event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  DatabaseState StateLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // DatabaseState::repeatables and repeatable_texts, as PgStore reads them.
  void RepeatablesLocked(DatabaseState* state) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Commits a repeatable step: upserts its `repeatables` row, appends its
  // "repeatable" event, notifies.
  absl::Status CommitRepeatableLocked(const StepRecord& record, absl::Duration duration)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  FakeStatementResult RunStatement(const std::string& text);

  Clock* const clock_;
  mutable absl::Mutex mu_;
  absl::CondVar changed_;
  FakeStatementHook hook_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> executed_ ABSL_GUARDED_BY(mu_);
  bool unavailable_ ABSL_GUARDED_BY(mu_) = false;
  // 0: free; else the id of the session holding the run lock.
  int64_t lock_holder_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_session_ ABSL_GUARDED_BY(mu_) = 1;
  bool initialized_ ABSL_GUARDED_BY(mu_) = false;
  int64_t run_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<SqlFailure> failure_ ABSL_GUARDED_BY(mu_);
  std::optional<int64_t> hold_above_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, Row> migrations_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, AppliedRepeatable> repeatables_ ABSL_GUARDED_BY(mu_);
  std::vector<EventRecord> events_ ABSL_GUARDED_BY(mu_);
  int64_t next_event_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::optional<SchemaRecord> schema_record_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, InstanceRecord> instances_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> user_tables_ ABSL_GUARDED_BY(mu_);
  std::vector<std::weak_ptr<FeedState>> feeds_ ABSL_GUARDED_BY(mu_);
};

struct FakeStoreOptions {
  // Recorded as the actor of instance_join events, and in failures.
  std::string coordinator_id;
};

// One coordinator's view of a FakeDatabase. Thread-safe.
class FakeStore : public Store {
 public:
  FakeStore(FakeDatabase* db, FakeStoreOptions options);

  absl::StatusOr<DatabaseState> ReadState() override;
  absl::StatusOr<std::vector<EventRecord>> ReadHistory(int limit, int64_t version) override;
  absl::StatusOr<std::vector<EventRecord>> ReadEventsAfter(int64_t after_id, int limit) override;
  absl::StatusOr<std::optional<SchemaRecord>> ReadSchemaRecord() override;
  absl::StatusOr<std::vector<InstanceRecord>> UpsertInstances(
      const std::vector<InstanceRecord>& instances, absl::Duration ttl) override;
  absl::Status RefreshLeases(const std::vector<std::string>& ids, absl::Duration ttl) override;
  absl::Status RemoveInstances(const std::vector<std::string>& ids,
                               const std::string& actor) override;
  // Polls the lock with the database's clock (a ManualClock makes waits instant).
  absl::StatusOr<std::unique_ptr<RunSession>> BeginRun(const LockWaitOptions& options) override;

  // A feed of this database's notifications.
  std::unique_ptr<ChangeFeed> NewChangeFeed();

 private:
  FakeDatabase* const db_;
  const FakeStoreOptions options_;
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_ENGINE_FAKE_STORE_H_
