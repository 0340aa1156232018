// The PostgreSQL store and the runner against a real database: the run
// protocol of DESIGN.md "Runs: the lock" and the peers' failure modes
// (concurrent starts, half-applied migrations, lock queues, lost sessions).
#include <atomic>
#include <pqxx/pqxx>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/postgres/pg_store.h"
#include "coordinator/engine/runner.h"
#include "coordinator/postgres/catalog.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;
using ::testing::HasSubstr;

class StoreRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    db_ = std::make_unique<TestDatabase>();
  }

  MigrationSet LoadSet() {
    std::vector<std::string> warnings;
    absl::StatusOr<MigrationSet> set = MigrationSet::LoadDirectory(dir_.path(), &warnings);
    EXPECT_TRUE(set.ok()) << set.status();
    return set.ok() ? std::move(*set) : MigrationSet();
  }

  std::unique_ptr<PgStore> NewStore(const std::string& id = "test-coordinator") {
    PgStoreOptions options;
    options.conninfo = db_->url();
    options.coordinator_id = id;
    return std::make_unique<PgStore>(options);
  }

  RunnerOptions FastOptions() {
    RunnerOptions options;
    options.coordinator_id = "test-coordinator";
    options.retry_backoff = absl::Milliseconds(10);
    return options;
  }

  int CountEvents(const std::string& kind) {
    return std::stoi(db_->Query(
        absl::StrCat("SELECT count(*) FROM schemagate.events WHERE kind = '", kind, "'")));
  }

  std::unique_ptr<TestDatabase> db_;
  TempDir dir_;
};

TEST_F(StoreRunnerTest, ReadStateOfAnEmptyDatabaseIsUninitialised) {
  auto store = NewStore();
  absl::StatusOr<DatabaseState> state = store->ReadState();
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_FALSE(state->initialized);
  EXPECT_TRUE(state->applied.empty());
  EXPECT_FALSE(state->run_in_progress);
}

TEST_F(StoreRunnerTest, BookkeepingSchemaIsCreatedIdempotently) {
  auto store = NewStore();
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<std::unique_ptr<RunSession>> session = store->BeginRun(LockWaitOptions());
    ASSERT_TRUE(session.ok()) << session.status();
    ASSERT_TRUE((*session)->EnsureSchema().ok());
    ASSERT_TRUE((*session)->EnsureSchema().ok());
  }
  absl::StatusOr<DatabaseState> state = store->ReadState();
  ASSERT_TRUE(state.ok());
  EXPECT_TRUE(state->initialized);
  EXPECT_EQ(db_->Query("SELECT meta_version FROM schemagate.meta"), "6");
}

TEST_F(StoreRunnerTest, RunsRecordTheSchemaTheyLeaveAndAFailedDescriptionRecordsNoFingerprint) {
  testing::WriteTrivialMigrations(dir_, 1, 2);
  MigrationSet set = LoadSet();
  auto store = NewStore();
  RunnerOptions options = FastOptions();
  int described = 0;
  bool fail = false;
  options.describe_schema = [&]() -> absl::StatusOr<SchemaDescription> {
    ++described;
    if (fail) return absl::UnavailableError("catalogs unreachable");
    return DescribeSchema(db_->url());
  };
  {
    Runner runner(store.get(), &set, options);
    absl::StatusOr<RunOutcome> outcome = runner.Apply(RunRequest(), nullptr, nullptr);
    ASSERT_TRUE(outcome.ok()) << outcome.status();
    absl::StatusOr<std::optional<SchemaRecord>> record = store->ReadSchemaRecord();
    ASSERT_TRUE(record.ok()) << record.status();
    ASSERT_TRUE(record->has_value());
    EXPECT_EQ((*record)->run_id, outcome->run_id);
    absl::StatusOr<SchemaDescription> live = DescribeSchema(db_->url());
    ASSERT_TRUE(live.ok());
    EXPECT_EQ((*record)->fingerprint, live->fingerprint);
    EXPECT_EQ(ParseSchemaDescription((*record)->description), *live);
    // Nothing pending: nothing described, nothing recorded again.
    const int before = described;
    ASSERT_TRUE(runner.Apply(RunRequest(), nullptr, nullptr).ok());
    EXPECT_EQ(described, before);
  }
  testing::WriteTrivialMigrations(dir_, 3, 3);
  set = LoadSet();
  fail = true;
  Runner runner(store.get(), &set, options);
  absl::StatusOr<RunOutcome> outcome = runner.Apply(RunRequest(), nullptr, nullptr);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  absl::StatusOr<std::optional<SchemaRecord>> record = store->ReadSchemaRecord();
  ASSERT_TRUE(record.ok() && record->has_value());
  // A stale fingerprint would report drift that is not there.
  EXPECT_EQ((*record)->fingerprint, "");
  EXPECT_EQ((*record)->run_id, outcome->run_id);
  EXPECT_EQ(CountEvents("schema_drift"), 0);
}

TEST_F(StoreRunnerTest, AppliesPendingMigrationsInOrderWithBookkeeping) {
  testing::WriteTrivialMigrations(dir_, 1, 5);
  MigrationSet set = LoadSet();
  auto store = NewStore();
  Runner runner(store.get(), &set, FastOptions());
  std::vector<RunEvent::Kind> kinds;
  absl::StatusOr<RunOutcome> outcome =
      runner.Apply(RunRequest(), [&](const RunEvent& e) { kinds.push_back(e.kind); }, nullptr);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->applied, 5);
  absl::StatusOr<DatabaseState> state = store->ReadState();
  ASSERT_TRUE(state.ok());
  ASSERT_EQ(state->applied.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(state->applied[i].version, i + 1);
    EXPECT_EQ(state->applied[i].checksum, set.Find(i + 1)->checksum);
    EXPECT_EQ(state->applied[i].applied_by, "test-coordinator");
    EXPECT_FALSE(state->applied[i].dirty);
  }
  EXPECT_EQ(state->run_epoch, 1);
  EXPECT_EQ(db_->Query("SELECT count(*) FROM pg_tables WHERE tablename LIKE 't_'"), "5");
  EXPECT_EQ(CountEvents("apply"), 5);
  EXPECT_EQ(CountEvents("run_start"), 1);
  EXPECT_EQ(CountEvents("run_finish"), 1);
  EXPECT_EQ(kinds.front(), RunEvent::Kind::kLockAcquired);
  EXPECT_EQ(kinds.back(), RunEvent::Kind::kRunFinished);

  // Nothing left: the second run changes nothing, not even the epoch.
  absl::StatusOr<RunOutcome> again = runner.Apply(RunRequest(), nullptr, nullptr);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->applied, 0);
  EXPECT_EQ(store->ReadState()->run_epoch, 1);
}

TEST_F(StoreRunnerTest, TargetVersionStopsTheRunThere) {
  testing::WriteTrivialMigrations(dir_, 1, 4);
  MigrationSet set = LoadSet();
  auto store = NewStore();
  Runner runner(store.get(), &set, FastOptions());
  RunRequest request;
  request.target_version = 2;
  ASSERT_EQ(runner.Apply(request, nullptr, nullptr)->applied, 2);
  request.target_version = 99;
  EXPECT_EQ(runner.Apply(request, nullptr, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(StoreRunnerTest, FailedMigrationIsRolledBackAndRecordedWithSqlstateAndLine) {
  dir_.Write("0001_ok.up.sql", "CREATE TABLE ok (id int);\n");
  dir_.Write("0002_bad.up.sql",
             "CREATE TABLE half (id int);\n\nINSERT INTO missing_table VALUES (1);\n");
  MigrationSet set = LoadSet();
  auto store = NewStore();
  Runner runner(store.get(), &set, FastOptions());
  std::optional<SqlFailure> reported;
  absl::StatusOr<RunOutcome> outcome = runner.Apply(
      RunRequest(),
      [&](const RunEvent& e) {
        if (e.kind == RunEvent::Kind::kMigrationFailed) reported = e.failure;
      },
      nullptr);
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(outcome.status().message(), HasSubstr("42P01"));
  EXPECT_THAT(outcome.status().message(), HasSubstr("0002_bad.up.sql:3"));
  ASSERT_TRUE(reported.has_value());
  EXPECT_EQ(reported->statement_index, 2);
  // The failed migration left nothing behind: its transaction rolled back.
  EXPECT_EQ(db_->Query("SELECT to_regclass('public.half')"), "");
  EXPECT_EQ(db_->Query("SELECT to_regclass('public.ok')"), "ok");
  absl::StatusOr<DatabaseState> state = store->ReadState();
  ASSERT_TRUE(state.ok());
  ASSERT_EQ(state->applied.size(), 1u);
  ASSERT_TRUE(state->failure.has_value());
  EXPECT_EQ(state->failure->version, 2);
  EXPECT_EQ(state->failure->sqlstate, "42P01");
  EXPECT_EQ(state->failure->line, 3);
  EXPECT_THAT(state->failure->message, HasSubstr("missing_table"));
  absl::StatusOr<std::vector<EventRecord>> history = store->ReadHistory(10, 2);
  ASSERT_TRUE(history.ok());
  ASSERT_FALSE(history->empty());
  EXPECT_EQ((*history)[0].kind, "failure");
  EXPECT_EQ((*history)[0].sqlstate, "42P01");

  // An automatic run does not retry an unchanged file...
  absl::StatusOr<RunOutcome> auto_again = runner.Apply(RunRequest(), nullptr, nullptr);
  EXPECT_EQ(auto_again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(auto_again.status().message(), HasSubstr("last run failed"));

  // ...but a fixed file runs, and clears the failure.
  dir_.Write("0002_bad.up.sql", "CREATE TABLE half (id int);\n");
  MigrationSet fixed = LoadSet();
  Runner fixed_runner(store.get(), &fixed, FastOptions());
  absl::StatusOr<RunOutcome> retried = fixed_runner.Apply(RunRequest(), nullptr, nullptr);
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->applied, 1);
  EXPECT_FALSE(store->ReadState()->failure.has_value());
  EXPECT_EQ(CountEvents("run_start"), 2);
}

TEST_F(StoreRunnerTest, OperatorRetryRunsAnUnchangedFailedMigration) {
  db_->Exec("CREATE TABLE gate (id int)");
  dir_.Write("0001_needs_row.up.sql",
             "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM gate) THEN "
             "RAISE EXCEPTION 'gate is empty'; END IF; END $$;\n");
  MigrationSet set = LoadSet();
  auto store = NewStore();
  RunnerOptions options = FastOptions();
  options.permissions.allow_non_empty = true;  // `gate` stands for the app's own table
  Runner runner(store.get(), &set, options);
  ASSERT_FALSE(runner.Apply(RunRequest(), nullptr, nullptr).ok());
  db_->Exec("INSERT INTO gate VALUES (1)");
  RunRequest retry;
  retry.retry_failed = true;
  absl::StatusOr<RunOutcome> outcome = runner.Apply(retry, nullptr, nullptr);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->applied, 1);
}

TEST_F(StoreRunnerTest, NoTransactionMigrationRunsStatementByStatement) {
  dir_.Write("0001_t.up.sql", "CREATE TABLE t (id int, x int);\n");
  dir_.Write("0002_idx.up.sql",
             "-- schemagate:no-transaction\n"
             "CREATE INDEX CONCURRENTLY t_id ON t (id);\n"
             "CREATE INDEX CONCURRENTLY t_x ON t (x);\n");
  MigrationSet set = LoadSet();
  auto store = NewStore();
  Runner runner(store.get(), &set, FastOptions());
  absl::StatusOr<RunOutcome> outcome = runner.Apply(RunRequest(), nullptr, nullptr);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(db_->Query("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                       "WHERE c.relname IN ('t_id', 't_x') AND i.indisvalid"),
            "2");
  EXPECT_EQ(db_->Query("SELECT state || '/' || statements_done FROM schemagate.migrations "
                       "WHERE version = 2"),
            "applied/2");
}

TEST_F(StoreRunnerTest, CutNoTransactionMigrationIsLeftDirtyAndBlocksLaterRuns) {
  dir_.Write("0001_t.up.sql", "CREATE TABLE t (id int);\n");
  dir_.Write("0002_idx.up.sql",
             "-- schemagate:no-transaction\n"
             "CREATE INDEX CONCURRENTLY t_id ON t (id);\n"
             "CREATE INDEX CONCURRENTLY t_missing ON no_such_table (id);\n");
  dir_.Write("0003_more.up.sql", "CREATE TABLE more (id int);\n");
  MigrationSet set = LoadSet();
  auto store = NewStore();
  Runner runner(store.get(), &set, FastOptions());
  absl::StatusOr<RunOutcome> outcome = runner.Apply(RunRequest(), nullptr, nullptr);
  ASSERT_FALSE(outcome.ok());
  EXPECT_THAT(outcome.status().message(), HasSubstr("left dirty"));
  EXPECT_EQ(db_->Query("SELECT state || '/' || statements_done FROM schemagate.migrations "
                       "WHERE version = 2"),
            "dirty/1");
  EXPECT_EQ(db_->Query("SELECT to_regclass('public.more')"), "");
  absl::StatusOr<RunOutcome> next = runner.Apply(RunRequest(), nullptr, nullptr);
  EXPECT_EQ(next.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(next.status().message(), HasSubstr("dirty"));
  EXPECT_THAT(next.status().message(), HasSubstr("schemagatectl repair"));
}

TEST_F(StoreRunnerTest, LockTimeoutIsRetriedWithBackoffUntilTheLockFrees) {
  db_->Exec("CREATE TABLE busy (id int)");
  dir_.Write("0001_alter.up.sql",
             "-- schemagate:lock-timeout=100ms\nALTER TABLE busy ADD COLUMN note text;\n");
  MigrationSet set = LoadSet();
  pqxx::connection holder(db_->url());
  auto holding = std::make_unique<pqxx::work>(holder);
  holding->exec("LOCK TABLE busy IN ACCESS SHARE MODE");
  RunnerOptions options = FastOptions();
  options.permissions.allow_non_empty = true;  // `busy` stands for the app's own table
  std::vector<absl::Duration> sleeps;
  options.sleep = [&](absl::Duration d) {
    sleeps.push_back(d);
    if (sleeps.size() == 2) holding->commit();  // The long query ends.
  };
  auto store = NewStore();
  Runner runner(store.get(), &set, options);
  int retries = 0;
  absl::StatusOr<RunOutcome> outcome = runner.Apply(
      RunRequest(),
      [&](const RunEvent& e) { retries += e.kind == RunEvent::Kind::kLockTimeoutRetry; },
      nullptr);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(retries, 2);
  ASSERT_EQ(sleeps.size(), 2u);
  EXPECT_EQ(sleeps[1], 2 * sleeps[0]);  // Exponential backoff.
  // History keeps each retry, not only the progress stream.
  EXPECT_EQ(db_->Query("SELECT count(*) FROM schemagate.events WHERE kind = 'lock_timeout' "
                       "AND version = 1 AND sqlstate = '55P03'"),
            "2");
  EXPECT_EQ(db_->Query("SELECT count(*) FROM information_schema.columns WHERE "
                       "table_name = 'busy' AND column_name = 'note'"),
            "1");
}

TEST_F(StoreRunnerTest, ExhaustedLockRetriesLeaveTheSetPendingNotFailed) {
  db_->Exec("CREATE TABLE busy (id int)");
  dir_.Write("0001_alter.up.sql",
             "-- schemagate:lock-timeout=50ms\nALTER TABLE busy ADD COLUMN note text;\n");
  MigrationSet set = LoadSet();
  pqxx::connection holder(db_->url());
  pqxx::work holding(holder);
  holding.exec("LOCK TABLE busy IN ACCESS SHARE MODE");
  RunnerOptions options = FastOptions();
  options.permissions.allow_non_empty = true;  // `busy` stands for the app's own table
  options.lock_retries = 2;
  options.sleep = [](absl::Duration) {};
  auto store = NewStore();
  Runner runner(store.get(), &set, options);
  absl::StatusOr<RunOutcome> outcome = runner.Apply(RunRequest(), nullptr, nullptr);
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(outcome.status().message(), HasSubstr("3 tries"));
  absl::StatusOr<DatabaseState> state = store->ReadState();
  ASSERT_TRUE(state.ok());
  EXPECT_FALSE(state->failure.has_value());
  EXPECT_TRUE(state->applied.empty());
  EXPECT_EQ(db_->Query("SELECT sqlstate FROM schemagate.events WHERE kind = 'failure'"), "55P03");
}

TEST_F(StoreRunnerTest, ConcurrentRunsApplyEachMigrationExactlyOnce) {
  testing::WriteTrivialMigrations(dir_, 1, 20);
  MigrationSet set = LoadSet();
  constexpr int kRunners = 6;
  std::atomic<int> applied{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  absl::Notification go;
  for (int i = 0; i < kRunners; ++i) {
    threads.emplace_back([&, i] {
      auto store = NewStore(absl::StrCat("c", i));
      Runner runner(store.get(), &set, FastOptions());
      go.WaitForNotification();
      absl::StatusOr<RunOutcome> outcome = runner.Apply(RunRequest(), nullptr, nullptr);
      if (outcome.ok()) {
        applied += outcome->applied;
      } else {
        ++errors;
        ADD_FAILURE() << outcome.status();
      }
    });
  }
  go.Notify();
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(applied.load(), 20);
  EXPECT_EQ(CountEvents("apply"), 20);
  EXPECT_EQ(db_->Query("SELECT count(*) FROM schemagate.migrations"), "20");
}

TEST_F(StoreRunnerTest, RunWaitsForTheLockWithoutBlockingAndGivesUpAtItsDeadline) {
  testing::WriteTrivialMigrations(dir_, 1, 1);
  MigrationSet set = LoadSet();
  const int64_t key = DeriveLockKey(db_->name(), "schemagate");
  pqxx::connection holder(db_->url());
  pqxx::nontransaction(holder).exec(absl::StrCat("SELECT pg_advisory_lock(", key, ")"));
  auto store = NewStore();
  EXPECT_EQ(store->ReadState()->run_in_progress, true);
  RunnerOptions options = FastOptions();
  options.max_lock_wait = absl::Milliseconds(1500);
  Runner runner(store.get(), &set, options);
  int waits = 0;
  absl::StatusOr<RunOutcome> outcome = runner.Apply(
      RunRequest(), [&](const RunEvent& e) { waits += e.kind == RunEvent::Kind::kLockWait; },
      nullptr);
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_GE(waits, 1);
  // Polling, not queueing: no session of ours waits in pg_locks.
  EXPECT_EQ(db_->Query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                       " AND database = (SELECT oid FROM pg_database WHERE datname = "
                       "current_database())"),
            "0");
  pqxx::nontransaction(holder).exec(absl::StrCat("SELECT pg_advisory_unlock(", key, ")"));
  EXPECT_TRUE(runner.Apply(RunRequest(), nullptr, nullptr).ok());
}

TEST_F(StoreRunnerTest, LostConnectionAbortsTheRunAndNothingIsRecorded) {
  dir_.Write("0001_slow.up.sql", "CREATE TABLE slow (id int);\nSELECT pg_sleep(30);\n");
  MigrationSet set = LoadSet();
  auto store = NewStore();
  Runner runner(store.get(), &set, FastOptions());
  std::thread killer([&] {
    // Terminate the run's backend once it is inside the migration.
    for (int i = 0; i < 200; ++i) {
      absl::SleepFor(absl::Milliseconds(50));
      // Only this test's database: other tests run beside it on the server.
      if (db_->Query("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                     "'schemagate-run' AND datname = current_database() "
                     "AND query LIKE '%pg_sleep%'") == "1") {
        db_->Query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                   "WHERE application_name = 'schemagate-run' AND datname = current_database()");
        return;
      }
    }
  });
  const absl::Time start = absl::Now();
  absl::StatusOr<RunOutcome> outcome = runner.Apply(RunRequest(), nullptr, nullptr);
  killer.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(db_->Query("SELECT to_regclass('public.slow')"), "");
  EXPECT_EQ(db_->Query("SELECT count(*) FROM schemagate.migrations"), "0");
  EXPECT_EQ(db_->Query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                       "(SELECT oid FROM pg_database WHERE datname = current_database())"),
            "0");
}

TEST_F(StoreRunnerTest, EpochFenceStopsARunWhoseLockWasTakenOver) {
  // Two statements each: one step at a time, not a batch (next test).
  for (int v = 1; v <= 3; ++v) {
    dir_.Write(absl::StrCat("000", v, "_two.up.sql"),
               absl::StrCat("CREATE TABLE t", v, " (id int);\nCOMMENT ON TABLE t", v, " IS 'x';\n"));
  }
  MigrationSet set = LoadSet();
  auto store = NewStore();
  Runner runner(store.get(), &set, FastOptions());
  absl::StatusOr<RunOutcome> outcome = runner.Apply(
      RunRequest(),
      [&](const RunEvent& e) {
        // Another coordinator bumps the epoch (as after a failover).
        if (e.kind == RunEvent::Kind::kMigrationFinished && e.version == 1) {
          db_->Exec("UPDATE schemagate.meta SET run_epoch = run_epoch + 1");
        }
      },
      nullptr);
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(outcome.status().message(), HasSubstr("epoch"));
  EXPECT_EQ(db_->Query("SELECT string_agg(version::text, ',') FROM schemagate.migrations"), "1");
}

TEST_F(StoreRunnerTest, EpochFenceStopsABatchMidWay) {
  // One-statement migrations go to the database together; the epoch moving
  // between two of them (here by the second one itself, as a coordinator
  // taking over would between them) stops the rest of the batch.
  dir_.Write("0001_a.up.sql", "CREATE TABLE batch_a (id int);\n");
  dir_.Write("0002_bump.up.sql", "UPDATE schemagate.meta SET run_epoch = run_epoch + 1;\n");
  dir_.Write("0003_c.up.sql", "CREATE TABLE batch_c (id int);\n");
  MigrationSet set = LoadSet();
  auto store = NewStore();
  std::vector<int64_t> finished;
  absl::StatusOr<RunOutcome> outcome = Runner(store.get(), &set, FastOptions())
                                           .Apply(
                                               RunRequest(),
                                               [&](const RunEvent& e) {
                                                 if (e.kind == RunEvent::Kind::kMigrationFinished) {
                                                   finished.push_back(e.version);
                                                 }
                                               },
                                               nullptr);
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(outcome.status().message(), HasSubstr("epoch"));
  EXPECT_EQ(db_->Query("SELECT string_agg(version::text, ',' ORDER BY version) FROM "
                       "schemagate.migrations"),
            "1,2");
  EXPECT_EQ(db_->Query("SELECT to_regclass('public.batch_c')"), "");
  EXPECT_THAT(finished, ::testing::ElementsAre(1, 2));
}

TEST_F(StoreRunnerTest, AFailureInABatchKeepsTheStepsBeforeItAndNamesItsLine) {
  dir_.Write("0001_a.up.sql", "CREATE TABLE batch_a (id int);\n");
  dir_.Write("0002_b.up.sql", "-- a comment line\nCREATE TABLE batch_b (id int) -- trailing\n");
  dir_.Write("0003_bad.up.sql", "-- first\n-- second\nINSERT INTO no_such_table VALUES (1);\n");
  dir_.Write("0004_d.up.sql", "CREATE TABLE batch_d (id int);\n");
  MigrationSet set = LoadSet();
  auto store = NewStore();
  absl::StatusOr<RunOutcome> outcome =
      Runner(store.get(), &set, FastOptions()).Apply(RunRequest(), nullptr, nullptr);
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(db_->Query("SELECT string_agg(version::text, ',' ORDER BY version) FROM "
                       "schemagate.migrations"),
            "1,2");
  EXPECT_EQ(db_->Query("SELECT to_regclass('public.batch_d')"), "");
  EXPECT_EQ(db_->Query("SELECT failed_version || ' ' || failed_sqlstate || ' ' || failed_line FROM "
                       "schemagate.meta"),
            "3 42P01 3");
  // The steps before it are each recorded as applied, with their own event.
  EXPECT_EQ(db_->Query("SELECT count(*) FROM schemagate.events WHERE kind = 'apply'"), "2");
  // The fixed file applies the rest.
  dir_.Write("0003_bad.up.sql", "CREATE TABLE batch_fixed (id int);\n");
  MigrationSet fixed = LoadSet();
  RunRequest retry;
  retry.retry_failed = true;
  ASSERT_TRUE(Runner(store.get(), &fixed, FastOptions()).Apply(retry, nullptr, nullptr).ok());
  EXPECT_EQ(db_->Query("SELECT string_agg(version::text, ',' ORDER BY version) FROM "
                       "schemagate.migrations"),
            "1,2,3,4");
}

TEST_F(StoreRunnerTest, NoStatementRunsOnceTheSessionNoLongerHoldsTheLock) {
  // What a transaction pooler does: the next transaction lands on a session
  // without the lock. Simulated by a migration that drops the lock.
  dir_.Write("0001_unlock.up.sql", "SELECT pg_advisory_unlock_all();\n");
  dir_.Write("0002_after.up.sql", "CREATE TABLE after_unlock (id int);\n");
  MigrationSet set = LoadSet();
  auto store = NewStore();
  absl::StatusOr<RunOutcome> outcome =
      Runner(store.get(), &set, FastOptions()).Apply(RunRequest(), nullptr, nullptr);
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(outcome.status().message(), HasSubstr("transaction pooler"));
  EXPECT_EQ(db_->Query("SELECT to_regclass('public.after_unlock')"), "");
}

TEST_F(StoreRunnerTest, EditedAppliedFileStopsEveryRun) {
  testing::WriteTrivialMigrations(dir_, 1, 2);
  MigrationSet set = LoadSet();
  auto store = NewStore();
  ASSERT_TRUE(Runner(store.get(), &set, FastOptions()).Apply(RunRequest(), nullptr, nullptr).ok());
  dir_.Write("0001_table_1.up.sql", "CREATE TABLE t1 (id bigint, edited text);\n");
  testing::WriteTrivialMigrations(dir_, 3, 1);
  MigrationSet edited = LoadSet();
  absl::StatusOr<RunOutcome> outcome =
      Runner(store.get(), &edited, FastOptions()).Apply(RunRequest(), nullptr, nullptr);
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(outcome.status().message(), HasSubstr("version 1"));
  EXPECT_EQ(db_->Query("SELECT to_regclass('public.t3')"), "");
}

TEST_F(StoreRunnerTest, HistoryIsNewestFirstAndFiltersByVersion) {
  testing::WriteTrivialMigrations(dir_, 1, 3);
  MigrationSet set = LoadSet();
  auto store = NewStore();
  ASSERT_TRUE(Runner(store.get(), &set, FastOptions()).Apply(RunRequest(), nullptr, nullptr).ok());
  absl::StatusOr<std::vector<EventRecord>> all = store->ReadHistory(100, 0);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 5u);
  EXPECT_EQ((*all)[0].kind, "run_finish");
  EXPECT_GT((*all)[0].id, (*all)[1].id);
  absl::StatusOr<std::vector<EventRecord>> two = store->ReadHistory(100, 2);
  ASSERT_EQ(two->size(), 1u);
  EXPECT_EQ((*two)[0].version, 2);
  EXPECT_EQ(store->ReadHistory(2, 0)->size(), 2u);
}

TEST_F(StoreRunnerTest, UnreachableDatabaseIsUnavailable) {
  PgStoreOptions options;
  options.conninfo = "postgres://nobody@127.0.0.1:1/none?connect_timeout=2";
  PgStore store(options);
  EXPECT_EQ(store.ReadState().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(store.BeginRun(LockWaitOptions()).status().code(), absl::StatusCode::kUnavailable);
}

// A damaged bookkeeping schema is an SQL error on a working connection:
// reported as one (with its SQLSTATE), never as an unreachable database.
TEST_F(StoreRunnerTest, AnSqlErrorWhileReadingTheStateIsNotUnavailable) {
  auto store = NewStore();
  {
    absl::StatusOr<std::unique_ptr<RunSession>> session = store->BeginRun(LockWaitOptions());
    ASSERT_TRUE(session.ok()) << session.status();
    ASSERT_TRUE((*session)->EnsureSchema().ok());
  }
  db_->Exec("ALTER TABLE schemagate.migrations DROP COLUMN statements_done");
  absl::StatusOr<DatabaseState> state = store->ReadState();
  EXPECT_EQ(state.status().code(), absl::StatusCode::kInternal) << state.status();
  EXPECT_THAT(std::string(state.status().message()), HasSubstr("SQLSTATE 42703"));
}

TEST(LockKeyTest, DerivedFromDatabaseAndSchemaOrGiven) {
  EXPECT_EQ(DeriveLockKey("app", "schemagate"), DeriveLockKey("app", "schemagate"));
  EXPECT_NE(DeriveLockKey("app", "schemagate"), DeriveLockKey("app", "other"));
  EXPECT_EQ(*ParseLockKey("12345"), 12345);
  EXPECT_EQ(*ParseLockKey("billing"), DeriveLockKey("billing", ""));
  EXPECT_FALSE(ParseLockKey("").ok());
}

}  // namespace
}  // namespace schemagate
