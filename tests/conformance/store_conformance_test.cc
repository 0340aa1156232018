// One contract, two implementations: every test here runs against the
// in-memory FakeStore and against PgStore on a real PostgreSQL (a fresh
// database per test), so the fake the unit tests trust behaves like the
// real store (STYLE.md: golang-migrate's shared driver suite, leveldb's Env).
//
// Statements are real SQL. The fake's statement hook plays PostgreSQL for
// the few this suite uses: a missing table fails with 42P01 and
// pg_terminate_backend(pg_backend_pid()) cuts the connection.
#include <atomic>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "coordinator/base/clock.h"
#include "coordinator/engine/fake_store.h"
#include "coordinator/postgres/pg_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// A 14-digit timestamp version, as `schemagatectl new` names files.
constexpr int64_t kTimestampVersion = 20261202044442;

// One backing database and the means to reach it.
class Backend {
 public:
  virtual ~Backend() = default;
  // A store (coordinator replica) on the shared database.
  virtual std::unique_ptr<Store> NewStore(const std::string& coordinator_id) = 0;
  virtual std::unique_ptr<ChangeFeed> NewFeed() = 0;
  // Lets `d` pass for leases: the fake's ManualClock moves; PostgreSQL's
  // now() cannot be moved, so every stamp of the instances moves back by
  // `d` instead, which is the same to every decision taken against now().
  virtual void Pass(absl::Duration d) = 0;
  // Creates table `schema`.`name` outside schemagate (as another tool would).
  virtual void CreateUserTable(const std::string& schema, const std::string& name) = 0;
};

class FakeBackend : public Backend {
 public:
  FakeBackend() : db_(&clock_) {
    db_.SetStatementHook([](const std::string& text) {
      if (absl::StrContains(text, "pg_terminate_backend")) {
        return FakeStatementResult::LoseConnection();
      }
      if (absl::StrContains(text, "no_such_table")) {
        return FakeStatementResult::Fail("42P01", "relation \"no_such_table\" does not exist");
      }
      return FakeStatementResult::Ok();
    });
  }
  std::unique_ptr<Store> NewStore(const std::string& coordinator_id) override {
    return std::make_unique<FakeStore>(&db_, FakeStoreOptions{coordinator_id});
  }
  std::unique_ptr<ChangeFeed> NewFeed() override {
    return FakeStore(&db_, FakeStoreOptions{}).NewChangeFeed();
  }
  void Pass(absl::Duration d) override { clock_.Advance(d); }
  void CreateUserTable(const std::string& schema, const std::string& name) override {
    tables_.push_back(schema + "." + name);
    db_.SetUserTables(tables_);
  }

 private:
  ManualClock clock_;
  FakeDatabase db_;
  std::vector<std::string> tables_;
};

class PgBackend : public Backend {
 public:
  std::unique_ptr<Store> NewStore(const std::string& coordinator_id) override {
    PgStoreOptions options;
    options.conninfo = db_.url();
    options.coordinator_id = coordinator_id;
    return std::make_unique<PgStore>(options);
  }
  std::unique_ptr<ChangeFeed> NewFeed() override {
    return std::make_unique<PgListener>(db_.url());
  }
  void Pass(absl::Duration d) override {
    const std::string back =
        absl::StrCat("interval '", absl::ToInt64Microseconds(d), " microseconds'");
    db_.Exec(absl::StrCat("UPDATE schemagate.instances SET first_seen = first_seen - ", back,
                          ", last_seen = last_seen - ", back,
                          ", lease_expires = lease_expires - ", back));
  }
  void CreateUserTable(const std::string& schema, const std::string& name) override {
    db_.Exec("CREATE SCHEMA IF NOT EXISTS " + schema);
    db_.Exec("CREATE TABLE " + schema + "." + name + " (id int)");
  }

 private:
  testing::TestDatabase db_;
};

struct BackendParam {
  std::string name;
  bool needs_database;
  std::function<std::unique_ptr<Backend>()> make;
};

void PrintTo(const BackendParam& param, std::ostream* os) { *os << param.name; }

class StoreConformanceTest : public ::testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override {
    if (GetParam().needs_database) SG_REQUIRE_DATABASE();
    backend_ = GetParam().make();
    store_ = backend_->NewStore("coordinator-a");
  }

  std::unique_ptr<RunSession> Begin(Store* store = nullptr) {
    absl::StatusOr<std::unique_ptr<RunSession>> session =
        (store ? store : store_.get())->BeginRun(LockWaitOptions());
    EXPECT_TRUE(session.ok()) << session.status();
    return session.ok() ? std::move(*session) : nullptr;
  }

  // A session on initialised bookkeeping with its epoch taken.
  std::unique_ptr<RunSession> BeginReady() {
    std::unique_ptr<RunSession> session = Begin();
    if (!session) return nullptr;
    EXPECT_TRUE(session->EnsureSchema().ok());
    EXPECT_TRUE(session->BumpEpoch().ok());
    return session;
  }

  DatabaseState State() {
    absl::StatusOr<DatabaseState> state = store_->ReadState();
    EXPECT_TRUE(state.ok()) << state.status();
    return state.ok() ? *state : DatabaseState();
  }

  std::vector<EventRecord> History(int limit = 100, int64_t version = 0) {
    absl::StatusOr<std::vector<EventRecord>> events = store_->ReadHistory(limit, version);
    EXPECT_TRUE(events.ok()) << events.status();
    return events.ok() ? *events : std::vector<EventRecord>();
  }

  static std::vector<SqlStatement> Sql(const std::vector<std::string>& texts) {
    std::vector<SqlStatement> out;
    int line = 1;
    for (const std::string& text : texts) {
      SqlStatement s;
      s.text = text;
      s.line = line;
      line += 2;
      out.push_back(s);
    }
    return out;
  }

  static StepRecord Step(int64_t version, bool up = true) {
    StepRecord record;
    record.version = version;
    record.name = "step_" + std::to_string(version % 1000);
    record.checksum = "sum" + std::to_string(version % 1000);
    record.run_id = "run-1";
    record.actor = "tester";
    record.up = up;
    return record;
  }

  // A repeatable migration's step (version 0).
  static StepRecord RepeatableStep(const std::string& name, const std::string& checksum) {
    StepRecord record = Step(0);
    record.name = name;
    record.checksum = checksum;
    record.repeatable = true;
    return record;
  }

  static StatementLimits Limits() { return StatementLimits{absl::Seconds(5), absl::ZeroDuration()}; }

  static EventRecord Event(const std::string& kind, int64_t version, const std::string& message) {
    EventRecord e;
    e.kind = kind;
    e.version = version;
    e.actor = "tester";
    e.message = message;
    return e;
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreConformanceTest, AFreshDatabaseHasNoBookkeeping) {
  DatabaseState state = State();
  EXPECT_FALSE(state.initialized);
  EXPECT_TRUE(state.applied.empty());
  EXPECT_FALSE(state.run_in_progress);
  EXPECT_TRUE(History().empty());
  absl::StatusOr<std::vector<EventRecord>> after = store_->ReadEventsAfter(0, 10);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(after->empty());
  absl::StatusOr<std::optional<SchemaRecord>> schema = store_->ReadSchemaRecord();
  ASSERT_TRUE(schema.ok()) << schema.status();
  EXPECT_FALSE(schema->has_value());
}

TEST_P(StoreConformanceTest, EnsureSchemaIsIdempotentAndStartsClean) {
  ASSERT_TRUE(store_->EnsureBookkeeping().ok());
  ASSERT_TRUE(store_->EnsureBookkeeping().ok());
  DatabaseState state = State();
  EXPECT_TRUE(state.initialized);
  EXPECT_TRUE(state.applied.empty());
  EXPECT_FALSE(state.failure.has_value());
  EXPECT_EQ(state.run_epoch, 0);
  EXPECT_EQ(state.last_event_id, 0);
  EXPECT_FALSE(state.hold_above.has_value());
  EXPECT_TRUE(state.live_instances.empty());
  EXPECT_FALSE(state.run_in_progress);
}

TEST_P(StoreConformanceTest, TheRunLockExcludesEveryOtherSessionUntilDestroyed) {
  std::unique_ptr<Store> replica = backend_->NewStore("coordinator-b");
  std::unique_ptr<RunSession> session = Begin();
  ASSERT_NE(session, nullptr);
  EXPECT_TRUE(State().run_in_progress);

  LockWaitOptions wait;
  wait.max_wait = absl::Milliseconds(1500);
  int waits = 0;
  wait.on_wait = [&](absl::Duration) { ++waits; };
  absl::StatusOr<std::unique_ptr<RunSession>> second = replica->BeginRun(wait);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kDeadlineExceeded) << second.status();
  EXPECT_GE(waits, 1);

  std::atomic<bool> cancelled{true};
  LockWaitOptions cancel;
  cancel.cancelled = &cancelled;
  EXPECT_EQ(replica->BeginRun(cancel).status().code(), absl::StatusCode::kCancelled);

  session.reset();
  EXPECT_FALSE(State().run_in_progress);
  EXPECT_NE(Begin(replica.get()), nullptr);
}

TEST_P(StoreConformanceTest, EpochsIncreaseAcrossSessionsAndFenceAnUnbumpedSession) {
  {
    std::unique_ptr<RunSession> session = Begin();
    ASSERT_TRUE(session->EnsureSchema().ok());
    EXPECT_EQ(*session->BumpEpoch(), 1);
  }
  std::unique_ptr<RunSession> session = Begin(backend_->NewStore("coordinator-b").get());
  SqlFailure failure;
  absl::Status fenced = session->RunTransactional(Sql({"CREATE TABLE conf_fenced (id int)"}),
                                                  Limits(), Step(1), nullptr, &failure);
  EXPECT_EQ(fenced.code(), absl::StatusCode::kAborted) << fenced;
  fenced = session->RunTransactional(Sql({"CREATE VIEW conf_fenced_v AS SELECT 1"}), Limits(),
                                     RepeatableStep("views", "v1"), nullptr, &failure);
  EXPECT_EQ(fenced.code(), absl::StatusCode::kAborted) << fenced;
  EXPECT_TRUE(State().repeatables.empty());
  EXPECT_EQ(*session->BumpEpoch(), 2);
  EXPECT_EQ(State().run_epoch, 2);
  EXPECT_TRUE(State().applied.empty());
}

TEST_P(StoreConformanceTest, ATransactionalStepCommitsItsRowAndEvent) {
  std::unique_ptr<RunSession> session = BeginReady();
  std::vector<int> observed;
  SqlFailure failure;
  ASSERT_TRUE(session
                  ->RunTransactional(
                      Sql({"CREATE TABLE conf_a (id int)", "CREATE TABLE conf_b (id int)"}),
                      Limits(), Step(kTimestampVersion),
                      [&](int i) { observed.push_back(i); }, &failure)
                  .ok());
  EXPECT_THAT(observed, ElementsAre(0, 1));
  DatabaseState state = State();
  ASSERT_EQ(state.applied.size(), 1u);
  const AppliedMigration& row = state.applied[0];
  EXPECT_EQ(row.version, kTimestampVersion);
  EXPECT_EQ(row.name, "step_442");
  EXPECT_EQ(row.checksum, "sum442");
  EXPECT_FALSE(row.dirty);
  EXPECT_EQ(row.applied_by, "tester");
  EXPECT_EQ(row.statements_done, 2);
  EXPECT_EQ(state.AppliedHead(), kTimestampVersion);
  std::vector<EventRecord> events = History();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "apply");
  EXPECT_EQ(events[0].version, kTimestampVersion);
  EXPECT_EQ(events[0].run_id, "run-1");
  EXPECT_EQ(events[0].actor, "tester");
  EXPECT_TRUE(events[0].duration.has_value());
  EXPECT_EQ(state.last_event_id, events[0].id);

  ASSERT_TRUE(session
                  ->RunTransactional(Sql({"DROP TABLE conf_b"}), Limits(),
                                     Step(kTimestampVersion, /*up=*/false), nullptr, &failure)
                  .ok());
  EXPECT_TRUE(State().applied.empty());
  EXPECT_EQ(History()[0].kind, "rollback");
}

TEST_P(StoreConformanceTest, AFailedTransactionalStepRecordsNothing) {
  std::unique_ptr<RunSession> session = BeginReady();
  SqlFailure failure;
  absl::Status status = session->RunTransactional(
      Sql({"CREATE TABLE conf_c (id int)", "SELECT * FROM no_such_table"}), Limits(), Step(7),
      nullptr, &failure);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_EQ(failure.version, 7);
  EXPECT_EQ(failure.name, "step_7");
  EXPECT_EQ(failure.checksum, "sum7");
  EXPECT_EQ(failure.sqlstate, "42P01");
  EXPECT_THAT(failure.message, HasSubstr("no_such_table"));
  EXPECT_EQ(failure.statement_index, 2);
  EXPECT_EQ(failure.line, 3);
  EXPECT_FALSE(failure.lock_timeout);
  EXPECT_EQ(failure.coordinator_id, "coordinator-a");
  EXPECT_TRUE(State().applied.empty());
  EXPECT_TRUE(History().empty());
  // The CREATE TABLE was rolled back with it: it runs again.
  EXPECT_TRUE(session
                  ->RunTransactional(Sql({"CREATE TABLE conf_c (id int)"}), Limits(), Step(7),
                                     nullptr, &failure)
                  .ok());
}

TEST_P(StoreConformanceTest, ABatchCommitsItsStepsInOrderAndStopsAtTheFirstFailure) {
  std::unique_ptr<RunSession> session = BeginReady();
  const std::vector<SqlStatement> a = Sql({"CREATE TABLE conf_batch_a (id int)"});
  const std::vector<SqlStatement> b = Sql({"CREATE TABLE conf_batch_b (id int) -- comment"});
  const std::vector<SqlStatement> bad = Sql({"SELECT * FROM no_such_table"});
  const std::vector<SqlStatement> d = Sql({"CREATE TABLE conf_batch_d (id int)"});
  std::vector<size_t> begun;
  auto on_step = [&](size_t i) {
    // Every step before the one beginning has committed (later ones may
    // have too by the time the notice is read).
    EXPECT_GE(State().applied.size(), i);
    begun.push_back(i);
  };
  size_t committed = 0;
  SqlFailure failure;
  ASSERT_TRUE(session
                  ->RunTransactionalBatch({{&a, Limits(), Step(1)}, {&b, Limits(), Step(2)}},
                                          on_step, &committed, &failure)
                  .ok());
  EXPECT_EQ(committed, 2u);
  EXPECT_THAT(begun, ElementsAre(0, 1));
  begun.clear();
  absl::Status status = session->RunTransactionalBatch(
      {{&bad, Limits(), Step(3)}, {&d, Limits(), Step(4)}},
      [&](size_t i) { begun.push_back(i); }, &committed, &failure);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_EQ(committed, 0u);
  EXPECT_THAT(begun, ElementsAre(0));
  EXPECT_EQ(failure.version, 3);
  EXPECT_EQ(failure.sqlstate, "42P01");
  EXPECT_EQ(failure.statement_index, 1);
  EXPECT_EQ(failure.line, 1);
  DatabaseState state = State();
  ASSERT_EQ(state.applied.size(), 2u);
  EXPECT_EQ(state.applied[1].version, 2);
  EXPECT_EQ(History().size(), 2u);
  // Nothing after the failure ran: conf_batch_d can be created now.
  ASSERT_TRUE(session
                  ->RunTransactionalBatch({{&d, Limits(), Step(4)}}, [](size_t) {}, &committed,
                                          &failure)
                  .ok());
  EXPECT_EQ(committed, 1u);
}

TEST_P(StoreConformanceTest, ANonTransactionalStepIsDirtyAndRecordsProgress) {
  std::unique_ptr<RunSession> session = BeginReady();
  const StepRecord record = Step(kTimestampVersion);
  ASSERT_TRUE(session->MarkDirty(record).ok());
  DatabaseState state = State();
  ASSERT_EQ(state.applied.size(), 1u);
  EXPECT_TRUE(state.applied[0].dirty);
  EXPECT_EQ(state.applied[0].statements_done, 0);
  EXPECT_EQ(state.AppliedHead(), 0);

  SqlFailure failure;
  std::vector<int> observed;
  absl::Status status = session->RunNonTransactional(
      Sql({"CREATE TABLE conf_n1 (id int)", "SELECT * FROM no_such_table",
           "CREATE TABLE conf_n3 (id int)"}),
      0, Limits(), record, [&](int i) { observed.push_back(i); }, &failure);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_EQ(failure.statement_index, 2);
  EXPECT_THAT(observed, ElementsAre(0, 1));
  state = State();
  EXPECT_TRUE(state.applied[0].dirty);
  EXPECT_EQ(state.applied[0].statements_done, 1);

  // Marking it dirty again (a resume) keeps the progress.
  ASSERT_TRUE(session->MarkDirty(record).ok());
  EXPECT_EQ(State().applied[0].statements_done, 1);

  observed.clear();
  ASSERT_TRUE(session
                  ->RunNonTransactional(Sql({"CREATE TABLE conf_n1 (id int)", "SELECT 1",
                                             "CREATE TABLE conf_n3 (id int)"}),
                                        1, Limits(), record,
                                        [&](int i) { observed.push_back(i); }, &failure)
                  .ok());
  EXPECT_THAT(observed, ElementsAre(1, 2));
  EXPECT_EQ(State().applied[0].statements_done, 3);

  ASSERT_TRUE(session->FinishDirty(record, absl::Milliseconds(1234)).ok());
  state = State();
  EXPECT_FALSE(state.applied[0].dirty);
  EXPECT_EQ(state.applied[0].duration, absl::Milliseconds(1234));
  EXPECT_EQ(state.AppliedHead(), kTimestampVersion);
  std::vector<EventRecord> events = History();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "apply");
  EXPECT_EQ(events[0].duration, absl::Milliseconds(1234));

  StepRecord down = record;
  down.up = false;
  EXPECT_FALSE(state.applied[0].rolling_back);
  ASSERT_TRUE(session->MarkDirty(down).ok());
  state = State();
  EXPECT_TRUE(state.applied[0].dirty);
  // The row says which file its count is of: the down's, not the up's.
  EXPECT_TRUE(state.applied[0].rolling_back);
  EXPECT_EQ(state.applied[0].statements_done, 0);
  ASSERT_TRUE(session->FinishDirty(down, absl::Milliseconds(5)).ok());
  EXPECT_TRUE(State().applied.empty());
  EXPECT_EQ(History()[0].kind, "rollback");
  EXPECT_EQ(History()[0].version, kTimestampVersion);
}

TEST_P(StoreConformanceTest, TheFailureIsRecordedAndCleared) {
  std::unique_ptr<RunSession> session = BeginReady();
  SqlFailure failure;
  failure.version = kTimestampVersion;
  failure.name = "add_things";
  failure.checksum = "abc";
  failure.sqlstate = "42P01";
  failure.message = "relation does not exist";
  failure.statement_index = 3;
  failure.line = 17;
  failure.coordinator_id = "coordinator-a";
  ASSERT_TRUE(session->SetFailure(failure).ok());
  DatabaseState state = State();
  ASSERT_TRUE(state.failure.has_value());
  EXPECT_EQ(state.failure->version, kTimestampVersion);
  EXPECT_EQ(state.failure->name, "add_things");
  EXPECT_EQ(state.failure->checksum, "abc");
  EXPECT_EQ(state.failure->sqlstate, "42P01");
  EXPECT_EQ(state.failure->message, "relation does not exist");
  EXPECT_EQ(state.failure->statement_index, 3);
  EXPECT_EQ(state.failure->line, 17);
  EXPECT_EQ(state.failure->coordinator_id, "coordinator-a");
  EXPECT_GT(state.failure->at, absl::UnixEpoch());
  ASSERT_TRUE(session->SetFailure(std::nullopt).ok());
  EXPECT_FALSE(State().failure.has_value());
}

// The texts that failed (DatabaseState::failed_texts) come from history: a
// failure event with a checksum, once per text, kept after the failure is
// cleared and the version applied.
TEST_P(StoreConformanceTest, FailureEventsKeepTheChecksumsOfTheTextsThatFailed) {
  std::unique_ptr<RunSession> session = BeginReady();
  EventRecord first = Event("failure", 3, "relation does not exist");
  first.checksum = "old-text";
  first.sqlstate = "42P01";
  ASSERT_TRUE(session->RecordEvent(first).ok());
  ASSERT_TRUE(session->RecordEvent(first).ok());
  EventRecord other = first;
  other.checksum = "other-text";
  ASSERT_TRUE(session->RecordEvent(other).ok());
  // Not texts: a failure without a checksum, another kind of event.
  ASSERT_TRUE(session->RecordEvent(Event("failure", 4, "rollback failed")).ok());
  EventRecord repair = Event("repair", 5, "");
  repair.checksum = "not-a-failure";
  ASSERT_TRUE(session->RecordEvent(repair).ok());
  StepRecord fixed = Step(3);
  fixed.checksum = "fixed-text";
  ASSERT_TRUE(session->MarkApplied(fixed, Event("apply", 3, "")).ok());
  const DatabaseState state = State();
  ASSERT_EQ(state.failed_texts.size(), 1u);
  EXPECT_THAT(state.failed_texts.at(3), ElementsAre("old-text", "other-text"));
  EXPECT_TRUE(state.TextFailed(3, "old-text"));
  EXPECT_FALSE(state.TextFailed(3, "fixed-text"));
  EXPECT_FALSE(state.TextFailed(5, "not-a-failure"));
}

// Tables schemagate did not make are counted (and the first few named, in
// byte order) while no migration is recorded, bookkeeping or not.
TEST_P(StoreConformanceTest, TablesMadeOutsideSchemagateAreSeenUntilAMigrationIsRecorded) {
  EXPECT_EQ(State().unrecorded_table_count, 0);
  backend_->CreateUserTable("public", "users");
  for (const char* name : {"t5", "t4", "t3", "t2", "t1"}) backend_->CreateUserTable("other", name);
  DatabaseState state = State();
  EXPECT_FALSE(state.initialized);
  EXPECT_EQ(state.unrecorded_table_count, 6);
  EXPECT_THAT(state.unrecorded_tables,
              ElementsAre("other.t1", "other.t2", "other.t3", "other.t4", "other.t5"));
  // schemagate's own tables are not counted.
  std::unique_ptr<RunSession> session = BeginReady();
  state = State();
  EXPECT_TRUE(state.initialized);
  EXPECT_EQ(state.unrecorded_table_count, 6);
  ASSERT_TRUE(session->MarkApplied(Step(1), Event("baseline", 1, "")).ok());
  state = State();
  EXPECT_EQ(state.unrecorded_table_count, 0);
  EXPECT_TRUE(state.unrecorded_tables.empty());
}

TEST_P(StoreConformanceTest, TheHoldIsSetAndCleared) {
  std::unique_ptr<RunSession> session = BeginReady();
  ASSERT_TRUE(session->SetHold(kTimestampVersion).ok());
  EXPECT_EQ(State().hold_above, kTimestampVersion);
  ASSERT_TRUE(session->SetHold(std::nullopt).ok());
  EXPECT_FALSE(State().hold_above.has_value());
}

TEST_P(StoreConformanceTest, MarkAppliedAndDeleteRowWriteTheRowAndTheirEvent) {
  std::unique_ptr<RunSession> session = BeginReady();
  ASSERT_TRUE(session->MarkDirty(Step(5)).ok());
  StepRecord fixed = Step(5);
  fixed.checksum = "new-sum";
  ASSERT_TRUE(session->MarkApplied(fixed, Event("repair", 5, "marked applied")).ok());
  DatabaseState state = State();
  ASSERT_EQ(state.applied.size(), 1u);
  EXPECT_FALSE(state.applied[0].dirty);
  EXPECT_EQ(state.applied[0].checksum, "new-sum");
  EXPECT_EQ(History()[0].kind, "repair");
  ASSERT_TRUE(session->MarkApplied(Step(9), Event("baseline", 9, "")).ok());
  EXPECT_EQ(State().AppliedHead(), 9);
  ASSERT_TRUE(session->DeleteRow(5, Event("repair", 5, "marked not applied")).ok());
  state = State();
  ASSERT_EQ(state.applied.size(), 1u);
  EXPECT_EQ(state.applied[0].version, 9);
  std::vector<EventRecord> events = History();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].message, "marked not applied");
  EXPECT_EQ(events[1].kind, "baseline");
}

TEST_P(StoreConformanceTest, EventsAreOrderedPagedAndFilteredByVersion) {
  std::unique_ptr<RunSession> session = BeginReady();
  const std::vector<int64_t> versions = {1, kTimestampVersion, 2, kTimestampVersion, 0};
  for (size_t i = 0; i < versions.size(); ++i) {
    EventRecord e = Event("note", versions[i], "event " + std::to_string(i));
    if (i == 0) e.message = "from postgres://app:hunter2@db/prod";
    ASSERT_TRUE(session->RecordEvent(e).ok());
  }
  absl::StatusOr<std::vector<EventRecord>> all = store_->ReadEventsAfter(0, 100);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 5u);
  for (size_t i = 1; i < all->size(); ++i) EXPECT_GT((*all)[i].id, (*all)[i - 1].id);
  EXPECT_THAT((*all)[0].message, Not(HasSubstr("hunter2")));
  EXPECT_EQ((*all)[4].version, 0);
  EXPECT_EQ(State().last_event_id, (*all)[4].id);

  absl::StatusOr<std::vector<EventRecord>> page = store_->ReadEventsAfter(0, 2);
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[1].id, (*all)[1].id);
  page = store_->ReadEventsAfter((*all)[1].id, 10);
  ASSERT_EQ(page->size(), 3u);
  EXPECT_EQ((*page)[0].id, (*all)[2].id);
  EXPECT_TRUE(store_->ReadEventsAfter((*all)[4].id, 10)->empty());

  std::vector<EventRecord> newest = History(2);
  ASSERT_EQ(newest.size(), 2u);
  EXPECT_EQ(newest[0].id, (*all)[4].id);
  EXPECT_EQ(newest[1].id, (*all)[3].id);
  std::vector<EventRecord> of_version = History(10, kTimestampVersion);
  ASSERT_EQ(of_version.size(), 2u);
  EXPECT_EQ(of_version[0].message, "event 3");
  EXPECT_EQ(of_version[1].message, "event 1");
  EXPECT_EQ(History(10, 2).size(), 1u);
}

TEST_P(StoreConformanceTest, TheSchemaRecordIsReplaced) {
  std::unique_ptr<RunSession> session = BeginReady();
  ASSERT_TRUE(session->RecordSchema(SchemaRecord{"f1", "table a", absl::Time(), "run-1"}).ok());
  ASSERT_TRUE(session->RecordSchema(SchemaRecord{"f2", "table b", absl::Time(), "run-2"}).ok());
  absl::StatusOr<std::optional<SchemaRecord>> record = store_->ReadSchemaRecord();
  ASSERT_TRUE(record.ok() && record->has_value()) << record.status();
  EXPECT_EQ((*record)->fingerprint, "f2");
  EXPECT_EQ((*record)->description, "table b");
  EXPECT_EQ((*record)->run_id, "run-2");
  EXPECT_GT((*record)->recorded_at, absl::UnixEpoch());
}

TEST_P(StoreConformanceTest, RehearsalRunsStepsInOneTransactionAndRecordsNothing) {
  std::unique_ptr<RunSession> session = BeginReady();
  const std::vector<SqlStatement> first = Sql({"CREATE TABLE conf_r (id int)"});
  const std::vector<SqlStatement> second =
      Sql({"INSERT INTO conf_r VALUES (1)", "SELECT * FROM no_such_table"});
  const std::vector<SqlStatement> third = Sql({"SELECT 1"});
  std::vector<RehearsalStep> steps = {{1, "r1", &first, Limits()},
                                      {2, "r2", &second, Limits()},
                                      {3, "r3", &third, Limits()}};
  std::vector<RehearsalResult> results;
  ASSERT_TRUE(session->Rehearse(steps, &results).ok());
  ASSERT_EQ(results.size(), 2u) << "stops at the first failure";
  EXPECT_TRUE(results[0].ok);
  EXPECT_FALSE(results[1].ok);
  EXPECT_EQ(results[1].version, 2);
  EXPECT_EQ(results[1].failure.sqlstate, "42P01");
  EXPECT_EQ(results[1].failure.statement_index, 2);
  EXPECT_EQ(results[1].failure.name, "r2");
  EXPECT_TRUE(State().applied.empty());
  EXPECT_TRUE(History().empty());
  // Rolled back: the table can be created for real.
  SqlFailure failure;
  EXPECT_TRUE(session->RunTransactional(first, Limits(), Step(1), nullptr, &failure).ok());
}

TEST_P(StoreConformanceTest, WithoutAnIndexThereIsNothingToFind) {
  std::unique_ptr<RunSession> session = BeginReady();
  absl::StatusOr<IndexLookup> found = session->LookUpIndex("", "conf_t", "conf_no_such_index");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->state, IndexLookup::State::kAbsent);
}

InstanceRecord Instance(const std::string& id, int64_t known) {
  InstanceRecord i;
  i.instance_id = id;
  i.app = "shop";
  i.app_version = "1.0";
  i.known_version = known;
  i.required_version = 1;
  i.coordinator_id = "coordinator-a";
  return i;
}

TEST_P(StoreConformanceTest, ALiveInstanceIdIsRefusedToAnotherAgentProcess) {
  ASSERT_TRUE(store_->EnsureBookkeeping().ok());
  std::unique_ptr<Store> replica = backend_->NewStore("coordinator-b");
  InstanceRecord holder = Instance("web-1", 3);
  holder.attach_token = "token-a";
  InstanceRecord other = Instance("web-1", 4);
  other.attach_token = "token-b";
  absl::StatusOr<std::vector<InstanceRecord>> refused =
      store_->UpsertInstances({holder}, absl::Hours(1));
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_TRUE(refused->empty());
  refused = replica->UpsertInstances({other}, absl::Hours(1));
  ASSERT_TRUE(refused.ok()) << refused.status();
  ASSERT_EQ(refused->size(), 1u);
  EXPECT_EQ((*refused)[0].instance_id, "web-1");
  DatabaseState state = State();
  ASSERT_EQ(state.live_instances.size(), 1u);
  EXPECT_EQ(state.live_instances[0].known_version, 3) << "the holder's row is untouched";
  // The same process (same token) moving to another replica is not refused.
  refused = replica->UpsertInstances({holder}, absl::Hours(1));
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_TRUE(refused->empty());
}

TEST_P(StoreConformanceTest, InstancesJoinLeaveAndLapse) {
  ASSERT_TRUE(store_->EnsureBookkeeping().ok());
  ASSERT_TRUE(
      store_->UpsertInstances({Instance("b-2", 3), Instance("a-1", 2)}, absl::Hours(1)).ok());
  DatabaseState state = State();
  ASSERT_EQ(state.live_instances.size(), 2u);
  EXPECT_EQ(state.live_instances[0].instance_id, "a-1");
  EXPECT_EQ(state.live_instances[1].known_version, 3);
  EXPECT_EQ(state.live_instances[1].app, "shop");
  EXPECT_GT(state.live_instances[0].lease_expires, state.live_instances[0].last_seen);
  EXPECT_EQ(History().size(), 2u);
  EXPECT_EQ(History()[0].kind, "instance_join");
  EXPECT_EQ(History()[0].actor, "coordinator-a");

  backend_->Pass(absl::Milliseconds(20));
  const absl::Time first_seen = State().live_instances[0].first_seen;
  ASSERT_TRUE(store_->UpsertInstances({Instance("a-1", 4)}, absl::Hours(1)).ok());
  state = State();
  EXPECT_EQ(state.live_instances[0].known_version, 4);
  EXPECT_EQ(state.live_instances[0].first_seen, first_seen);
  EXPECT_EQ(History().size(), 2u) << "a live instance does not join again";

  ASSERT_TRUE(store_->RemoveInstances({"a-1"}, "agent").ok());
  ASSERT_TRUE(store_->RemoveInstances({"a-1"}, "agent").ok());
  state = State();
  ASSERT_EQ(state.live_instances.size(), 1u);
  ASSERT_EQ(state.lapsed_instances.size(), 1u);
  EXPECT_EQ(state.lapsed_instances[0].instance_id, "a-1");
  std::vector<EventRecord> events = History();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].kind, "instance_leave");
  EXPECT_EQ(events[0].actor, "agent");

  ASSERT_TRUE(store_->UpsertInstances({Instance("c-3", 1)}, absl::Milliseconds(300)).ok());
  ASSERT_TRUE(store_->RefreshLeases({"b-2"}, absl::Milliseconds(300)).ok());
  EXPECT_EQ(State().live_instances.size(), 2u);
  backend_->Pass(absl::Milliseconds(700));
  state = State();
  EXPECT_TRUE(state.live_instances.empty());
  EXPECT_EQ(state.lapsed_instances.size(), 3u);
  ASSERT_TRUE(store_->RefreshLeases({"b-2"}, absl::Hours(1)).ok());
  EXPECT_EQ(State().live_instances.size(), 1u);
  ASSERT_TRUE(store_->UpsertInstances({Instance("c-3", 1)}, absl::Hours(1)).ok());
  EXPECT_EQ(History()[0].kind, "instance_join") << "a lapsed instance joins again";
}

TEST_P(StoreConformanceTest, CommitsNotifyEveryFeed) {
  ASSERT_TRUE(store_->EnsureBookkeeping().ok());
  std::unique_ptr<ChangeFeed> feed = backend_->NewFeed();
  ASSERT_TRUE(feed->Connect().ok());
  EXPECT_TRUE(feed->connected());
  EXPECT_EQ(*feed->Wait(absl::Milliseconds(50)), 0);

  std::unique_ptr<Store> replica = backend_->NewStore("coordinator-b");
  ASSERT_TRUE(replica->UpsertInstances({Instance("a-1", 1)}, absl::Hours(1)).ok());
  EXPECT_GE(*feed->Wait(absl::Seconds(5)), 1);
  ASSERT_TRUE(replica->RefreshLeases({"a-1"}, absl::Hours(1)).ok());
  EXPECT_EQ(*feed->Wait(absl::Milliseconds(100)), 0) << "lease refreshes do not wake anyone";
  {
    std::unique_ptr<RunSession> session = BeginReady();
    ASSERT_TRUE(session->SetHold(3).ok());
    EXPECT_GE(*feed->Wait(absl::Seconds(5)), 1);
    SqlFailure failure;
    ASSERT_TRUE(session
                    ->RunTransactional(Sql({"CREATE TABLE conf_n (id int)"}), Limits(), Step(1),
                                       nullptr, &failure)
                    .ok());
    EXPECT_GE(*feed->Wait(absl::Seconds(5)), 1);
  }
  ASSERT_TRUE(replica->RemoveInstances({"a-1"}, "agent").ok());
  EXPECT_GE(*feed->Wait(absl::Seconds(5)), 1);
}

TEST_P(StoreConformanceTest, ALostConnectionAbortsRecordsNothingAndFreesTheLock) {
  std::unique_ptr<RunSession> session = BeginReady();
  SqlFailure failure;
  absl::Status status = session->RunTransactional(
      Sql({"CREATE TABLE conf_lost (id int)", "SELECT pg_terminate_backend(pg_backend_pid())"}),
      Limits(), Step(3), nullptr, &failure);
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted) << status;
  EXPECT_EQ(session->SetHold(1).code(), absl::StatusCode::kAborted);
  LockWaitOptions wait;
  wait.max_wait = absl::Seconds(5);
  std::unique_ptr<Store> replica = backend_->NewStore("coordinator-b");
  absl::StatusOr<std::unique_ptr<RunSession>> next = replica->BeginRun(wait);
  ASSERT_TRUE(next.ok()) << next.status();
  DatabaseState state = State();
  EXPECT_TRUE(state.applied.empty());
  EXPECT_FALSE(state.hold_above.has_value());
  EXPECT_EQ(state.last_event_id, 0);
}

// A repeatable migration's step: its `repeatables` row (one per name, the
// text last applied) and a "repeatable" event commit with its SQL; every
// text applied stays known (DatabaseState::repeatable_texts).
TEST_P(StoreConformanceTest, ARepeatableStepUpsertsItsRowAndEvent) {
  std::unique_ptr<RunSession> session = BeginReady();
  StepRecord record = RepeatableStep("views", "text-1");
  record.message = "applied (new)";
  SqlFailure failure;
  ASSERT_TRUE(session
                  ->RunTransactional(Sql({"CREATE VIEW conf_v AS SELECT 1 AS one"}), Limits(),
                                     record, nullptr, &failure)
                  .ok());
  DatabaseState state = State();
  EXPECT_TRUE(state.applied.empty());
  ASSERT_EQ(state.repeatables.size(), 1u);
  EXPECT_EQ(state.repeatables[0].name, "views");
  EXPECT_EQ(state.repeatables[0].checksum, "text-1");
  EXPECT_EQ(state.repeatables[0].applied_by, "tester");
  EXPECT_EQ(state.repeatables[0].run_id, "run-1");
  EXPECT_GT(state.repeatables[0].applied_at, absl::UnixEpoch());
  std::vector<EventRecord> events = History();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "repeatable");
  EXPECT_EQ(events[0].version, 0);
  EXPECT_EQ(events[0].name, "views");
  EXPECT_EQ(events[0].message, "applied (new)");
  EXPECT_TRUE(events[0].duration.has_value());

  record.checksum = "text-2";
  record.run_id = "run-2";
  record.message = "re-applied (changed)";
  ASSERT_TRUE(session
                  ->RunTransactional(
                      Sql({"CREATE OR REPLACE VIEW conf_v AS SELECT 1 AS one, 2 AS two"}),
                      Limits(), record, nullptr, &failure)
                  .ok());
  StepRecord other = record;
  other.name = "functions";
  other.checksum = "f-1";
  ASSERT_TRUE(
      session->RunTransactional(Sql({"SELECT 1"}), Limits(), other, nullptr, &failure).ok());
  state = State();
  ASSERT_EQ(state.repeatables.size(), 2u);
  // By name, in byte order.
  EXPECT_EQ(state.repeatables[0].name, "functions");
  EXPECT_EQ(state.repeatables[1].checksum, "text-2");
  EXPECT_EQ(state.repeatables[1].run_id, "run-2");
  ASSERT_NE(state.FindRepeatable("views"), nullptr);
  EXPECT_EQ(state.FindRepeatable("nothing"), nullptr);
  EXPECT_THAT(state.repeatable_texts.at("views"), ElementsAre("text-1", "text-2"));
  EXPECT_TRUE(state.RepeatableTextApplied("views", "text-1"));
  EXPECT_FALSE(state.RepeatableTextApplied("views", "f-1"));
  EXPECT_EQ(History().size(), 3u);
  EXPECT_EQ(History()[1].message, "re-applied (changed)");
}

// A failed repeatable records nothing; its failure (version 0) reads back
// as a repeatable's and is no failed text of a version.
TEST_P(StoreConformanceTest, AFailedRepeatableRecordsNothingAndItsFailureReadsBack) {
  std::unique_ptr<RunSession> session = BeginReady();
  StepRecord record = RepeatableStep("views", "broken");
  SqlFailure failure;
  absl::Status status = session->RunTransactional(
      Sql({"CREATE VIEW conf_bad AS SELECT 1", "SELECT * FROM no_such_table"}), Limits(), record,
      nullptr, &failure);
  ASSERT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_TRUE(failure.of_repeatable());
  EXPECT_EQ(failure.name, "views");
  EXPECT_EQ(failure.checksum, "broken");
  EXPECT_EQ(failure.sqlstate, "42P01");
  EXPECT_EQ(failure.statement_index, 2);
  EXPECT_TRUE(State().repeatables.empty());
  EXPECT_TRUE(History().empty());
  ASSERT_TRUE(session->SetFailure(failure).ok());
  EventRecord event = Event("failure", 0, failure.message);
  event.name = "views";
  event.checksum = "broken";
  ASSERT_TRUE(session->RecordEvent(event).ok());
  const DatabaseState state = State();
  ASSERT_TRUE(state.failure.has_value());
  EXPECT_TRUE(state.failure->of_repeatable());
  EXPECT_EQ(state.failure->name, "views");
  EXPECT_EQ(state.failure->checksum, "broken");
  EXPECT_TRUE(state.failed_texts.empty());
  EXPECT_TRUE(state.repeatable_texts.empty());
}

INSTANTIATE_TEST_SUITE_P(
    Backends, StoreConformanceTest,
    ::testing::Values(
        BackendParam{"fake", false, [] { return std::unique_ptr<Backend>(new FakeBackend()); }},
        BackendParam{"postgres", true,
                     [] { return std::unique_ptr<Backend>(new PgBackend()); }}),
    [](const ::testing::TestParamInfo<BackendParam>& info) { return info.param.name; });

}  // namespace
}  // namespace schemagate
