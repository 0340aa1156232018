// The runner on the in-memory FakeStore: order, failures, lock-timeout
// retries, no-transaction migrations, resume, rollback and lost
// connections, without a database and without sleeping. Only the public
// Runner API is used, so the tests outlive changes to how it decides.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "coordinator/base/clock.h"
#include "coordinator/engine/fake_store.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/engine/runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace schemagate {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class RunnerTest : public ::testing::Test {
 protected:
  RunnerTest() : db_(&clock_), store_(&db_, FakeStoreOptions{"test-coordinator"}) {
    options_.coordinator_id = "test-coordinator";
    options_.sleep = [this](absl::Duration d) { sleeps_.push_back(d); };
    // Statements containing FAIL:<sqlstate> fail with it; CUT cuts the connection.
    db_.SetStatementHook([this](const std::string& text) {
      if (on_statement_) on_statement_(text);
      if (absl::StrContains(text, "CUT")) return FakeStatementResult::LoseConnection();
      const size_t at = text.find("FAIL:");
      if (at != std::string::npos) {
        const std::string sqlstate = text.substr(at + 5, 5);
        if (sqlstate == "55P03" && lock_failures_left_ > 0) {
          --lock_failures_left_;
          return FakeStatementResult::Fail(sqlstate, "canceling statement due to lock timeout");
        }
        if (sqlstate != "55P03") return FakeStatementResult::Fail(sqlstate, "it broke");
      }
      return FakeStatementResult::Ok();
    });
  }

  MigrationSet Load(const std::map<std::string, std::string>& files) {
    std::vector<std::string> warnings;
    absl::StatusOr<MigrationSet> set = MigrationSet::LoadFiles("migrations", files, &warnings);
    EXPECT_TRUE(set.ok()) << set.status();
    return set.ok() ? std::move(*set) : MigrationSet();
  }

  DatabaseState State() { return *store_.ReadState(); }

  std::vector<std::string> Kinds() {
    std::vector<std::string> kinds;
    absl::StatusOr<std::vector<EventRecord>> events = store_.ReadEventsAfter(0, 1000);
    EXPECT_TRUE(events.ok()) << events.status();
    if (!events.ok()) return kinds;
    for (const EventRecord& e : *events) kinds.push_back(e.kind);
    return kinds;
  }

  int Count(const std::string& kind) {
    int n = 0;
    for (const std::string& k : Kinds()) n += k == kind;
    return n;
  }

  ManualClock clock_;
  FakeDatabase db_;
  FakeStore store_;
  RunnerOptions options_;
  std::vector<absl::Duration> sleeps_;
  std::function<void(const std::string&)> on_statement_;
  int lock_failures_left_ = 0;
};

TEST_F(RunnerTest, AppliesInVersionOrderAndRecordsEachStep) {
  MigrationSet set = Load({{"0002_b.up.sql", "CREATE TABLE b (id int);\n"},
                           {"0001_a.up.sql", "CREATE TABLE a (id int);\n"},
                           {"0003_c.up.sql", "CREATE TABLE c (id int);\n"}});
  Runner runner(&store_, &set, options_);
  absl::StatusOr<RunOutcome> outcome = runner.Apply(RunRequest(), nullptr, nullptr);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->applied, 3);
  EXPECT_THAT(db_.executed(), ElementsAre("CREATE TABLE a (id int)", "CREATE TABLE b (id int)",
                                          "CREATE TABLE c (id int)"));
  DatabaseState state = State();
  ASSERT_EQ(state.applied.size(), 3u);
  EXPECT_EQ(state.AppliedHead(), 3);
  EXPECT_EQ(state.applied[1].checksum, set.Find(2)->checksum);
  EXPECT_EQ(Count("apply"), 3);
  EXPECT_FALSE(state.run_in_progress);
  // Nothing left to do: a second run applies nothing.
  EXPECT_EQ(runner.Apply(RunRequest(), nullptr, nullptr)->applied, 0);
  EXPECT_EQ(db_.executed().size(), 3u);
}

TEST_F(RunnerTest, AFailingMigrationIsRecordedAndStopsTheRun) {
  MigrationSet set = Load({{"0001_a.up.sql", "CREATE TABLE a (id int);\n"},
                           {"0002_bad.up.sql", "CREATE TABLE x (id int);\n\nSELECT 'FAIL:42P01';\n"},
                           {"0003_c.up.sql", "CREATE TABLE c (id int);\n"}});
  Runner runner(&store_, &set, options_);
  absl::StatusOr<RunOutcome> outcome = runner.Apply(RunRequest(), nullptr, nullptr);
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(outcome.status().message(), HasSubstr("0002_bad.up.sql:3"));
  DatabaseState state = State();
  ASSERT_EQ(state.applied.size(), 1u);
  ASSERT_TRUE(state.failure.has_value());
  EXPECT_EQ(state.failure->version, 2);
  EXPECT_EQ(state.failure->sqlstate, "42P01");
  EXPECT_EQ(state.failure->statement_index, 2);
  EXPECT_EQ(state.failure->coordinator_id, "test-coordinator");
  EXPECT_EQ(Count("failure"), 1);
  for (const std::string& text : db_.executed()) EXPECT_THAT(text, ::testing::Not(HasSubstr("c (id")));
  // An unchanged failed file is not retried automatically.
  EXPECT_EQ(runner.Apply(RunRequest(), nullptr, nullptr).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(State().applied.size(), 1u);
}

TEST_F(RunnerTest, ALockTimeoutIsRetriedWithBackoffThenSucceeds) {
  MigrationSet set =
      Load({{"0001_alter.up.sql", "-- schemagate:lock-timeout=100ms\nSELECT 'FAIL:55P03';\n"}});
  options_.retry_backoff = absl::Seconds(1);
  lock_failures_left_ = 2;
  Runner runner(&store_, &set, options_);
  int retries = 0;
  absl::StatusOr<RunOutcome> outcome = runner.Apply(
      RunRequest(),
      [&](const RunEvent& e) { retries += e.kind == RunEvent::Kind::kLockTimeoutRetry; },
      nullptr);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->applied, 1);
  EXPECT_EQ(retries, 2);
  ASSERT_EQ(sleeps_.size(), 2u);
  EXPECT_EQ(sleeps_[1], 2 * sleeps_[0]);
  EXPECT_EQ(Count("lock_timeout"), 2);
  EXPECT_FALSE(State().failure.has_value());
  EXPECT_EQ(State().AppliedHead(), 1);
}

TEST_F(RunnerTest, ExhaustedLockRetriesLeaveTheSetPendingNotFailed) {
  MigrationSet set = Load({{"0001_alter.up.sql", "SELECT 'FAIL:55P03';\n"}});
  options_.lock_retries = 2;
  lock_failures_left_ = 100;
  Runner runner(&store_, &set, options_);
  absl::StatusOr<RunOutcome> outcome = runner.Apply(RunRequest(), nullptr, nullptr);
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(outcome.status().message(), HasSubstr("3 tries"));
  EXPECT_EQ(sleeps_.size(), 2u);
  DatabaseState state = State();
  EXPECT_FALSE(state.failure.has_value());
  EXPECT_TRUE(state.applied.empty());
  EXPECT_EQ(lock_failures_left_, 97);
}

TEST_F(RunnerTest, ANoTransactionMigrationIsDirtyWhileItRunsAndCleanAfter) {
  MigrationSet set = Load({{"0001_idx.up.sql",
                            "-- schemagate:no-transaction\n"
                            "CREATE INDEX CONCURRENTLY t_a ON t (a);\n"
                            "CREATE INDEX CONCURRENTLY t_b ON t (b);\n"}});
  std::vector<std::string> seen;
  on_statement_ = [&](const std::string& text) {
    const AppliedMigration* row = nullptr;
    DatabaseState state = State();
    row = state.Find(1);
    seen.push_back(row == nullptr ? "none"
                                  : absl::StrCat(row->dirty ? "dirty/" : "applied/",
                                                 row->statements_done, " ",
                                                 absl::StrContains(text, "t_a") ? "t_a" : "t_b"));
  };
  Runner runner(&store_, &set, options_);
  absl::StatusOr<RunOutcome> outcome = runner.Apply(RunRequest(), nullptr, nullptr);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_THAT(seen, ElementsAre("dirty/0 t_a", "dirty/1 t_b"));
  const DatabaseState after = State();  // Find points into it: keep it alive
  const AppliedMigration* row = after.Find(1);
  ASSERT_NE(row, nullptr);
  EXPECT_FALSE(row->dirty);
  EXPECT_EQ(row->statements_done, 2);
}

TEST_F(RunnerTest, ACutNoTransactionMigrationStaysDirtyAndResumesWhereItStopped) {
  const std::map<std::string, std::string> files = {
      {"0001_idx.up.sql",
       "-- schemagate:no-transaction\n"
       "CREATE INDEX CONCURRENTLY t_a ON t (a);\n"
       "CREATE INDEX CONCURRENTLY t_b ON t (b) WHERE 'FAIL:XX000' <> '';\n"
       "CREATE INDEX CONCURRENTLY t_c ON t (c);\n"}};
  MigrationSet set = Load(files);
  Runner runner(&store_, &set, options_);
  ASSERT_FALSE(runner.Apply(RunRequest(), nullptr, nullptr).ok());
  const DatabaseState cut = State();  // Find points into it: keep it alive
  const AppliedMigration* row = cut.Find(1);
  ASSERT_NE(row, nullptr);
  EXPECT_TRUE(row->dirty);
  EXPECT_EQ(row->statements_done, 1);
  EXPECT_THAT(runner.Apply(RunRequest(), nullptr, nullptr).status().message(),
              HasSubstr("dirty"));

  // The statement is fixed outside (the file stays the same); resume runs
  // from statement 2 only.
  db_.SetStatementHook([](const std::string&) { return FakeStatementResult::Ok(); });
  RepairRequest resume;
  resume.action = RepairRequest::Action::kResume;
  resume.version = 1;
  resume.actor = "operator";
  absl::StatusOr<std::string> resumed = runner.Repair(resume, nullptr);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  std::vector<std::string> executed = db_.executed();
  ASSERT_EQ(executed.size(), 3u);
  EXPECT_THAT(executed[1], HasSubstr("t_b"));
  EXPECT_THAT(executed[2], HasSubstr("t_c"));
  const DatabaseState resumed_state = State();
  row = resumed_state.Find(1);
  ASSERT_NE(row, nullptr);
  EXPECT_FALSE(row->dirty);
  EXPECT_EQ(row->statements_done, 3);
}

TEST_F(RunnerTest, RollbackRunsDownFilesNewestFirst) {
  MigrationSet set = Load({{"0001_a.up.sql", "CREATE TABLE a (id int);\n"},
                           {"0001_a.down.sql", "DROP TABLE a;\n"},
                           {"0002_b.up.sql", "CREATE TABLE b (id int);\n"},
                           {"0002_b.down.sql", "DROP TABLE b;\n"},
                           {"0003_c.up.sql", "CREATE TABLE c (id int);\n"},
                           {"0003_c.down.sql", "DROP TABLE c;\n"}});
  Runner runner(&store_, &set, options_);
  ASSERT_TRUE(runner.Apply(RunRequest(), nullptr, nullptr).ok());
  RollbackRequest request;
  request.target_version = 1;
  request.actor = "operator";
  absl::StatusOr<RunOutcome> outcome = runner.Rollback(request, nullptr, nullptr);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  std::vector<std::string> executed = db_.executed();
  ASSERT_EQ(executed.size(), 5u);
  EXPECT_EQ(executed[3], "DROP TABLE c");
  EXPECT_EQ(executed[4], "DROP TABLE b");
  DatabaseState state = State();
  EXPECT_EQ(state.AppliedHead(), 1);
  EXPECT_EQ(state.applied.size(), 1u);
  EXPECT_EQ(Count("rollback"), 2);
}

TEST_F(RunnerTest, ALostConnectionAbortsTheRunAndRecordsNothingAfter) {
  MigrationSet set = Load({{"0001_a.up.sql", "CREATE TABLE a (id int);\n"},
                           {"0002_cut.up.sql", "CREATE TABLE x (id int);\nSELECT 'CUT';\n"},
                           {"0003_c.up.sql", "CREATE TABLE c (id int);\n"}});
  Runner runner(&store_, &set, options_);
  absl::StatusOr<RunOutcome> outcome = runner.Apply(RunRequest(), nullptr, nullptr);
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kAborted) << outcome.status();
  DatabaseState state = State();
  EXPECT_EQ(state.AppliedHead(), 1);
  EXPECT_EQ(state.applied.size(), 1u);
  EXPECT_FALSE(state.failure.has_value());
  EXPECT_FALSE(state.run_in_progress);
  EXPECT_EQ(Count("failure"), 0);
  EXPECT_EQ(Count("run_finish"), 0);
  // The next run picks up where the lost one stopped.
  db_.SetStatementHook([](const std::string&) { return FakeStatementResult::Ok(); });
  absl::StatusOr<RunOutcome> next = runner.Apply(RunRequest(), nullptr, nullptr);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->applied, 2);
}

}  // namespace
}  // namespace schemagate
