// `repair --resume` against a real PostgreSQL, in the window a kill -9
// leaves: the coordinator's backend completed a CREATE/DROP INDEX
// CONCURRENTLY but the statement was never recorded, so the row is dirty
// at statement 0 while the index is already valid (or already gone). The
// window is simulated by doing the statement's work by hand.
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/postgres/pg_store.h"
#include "coordinator/engine/runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;
using ::testing::HasSubstr;
using ::testing::Not;

class ResumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    db_ = std::make_unique<TestDatabase>();
    PgStoreOptions options;
    options.conninfo = db_->url();
    options.coordinator_id = "test-coordinator";
    store_ = std::make_unique<PgStore>(options);
  }

  // Loads the set, applies everything below `dirty_version` and leaves
  // `dirty_version`'s row dirty at statement 0, as a kill -9 inside its
  // first statement does.
  void ApplyBelowAndCut(int64_t dirty_version) {
    std::vector<std::string> warnings;
    absl::StatusOr<MigrationSet> set = MigrationSet::LoadDirectory(dir_.path(), &warnings);
    ASSERT_TRUE(set.ok()) << set.status();
    set_ = std::move(*set);
    RunnerOptions options;
    options.coordinator_id = "test-coordinator";
    options.retry_backoff = absl::Milliseconds(10);
    runner_ = std::make_unique<Runner>(store_.get(), &set_, options);
    RunRequest request;
    request.target_version = dirty_version - 1;
    absl::StatusOr<RunOutcome> outcome = runner_->Apply(request, nullptr, nullptr);
    ASSERT_TRUE(outcome.ok()) << outcome.status();
    const Migration* m = set_.Find(dirty_version);
    ASSERT_NE(m, nullptr);
    pqxx::connection conn(db_->url());
    pqxx::work tx(conn);
    tx.exec_params(
        "INSERT INTO schemagate.migrations (version, name, checksum, state, applied_by, "
        "statements_done, run_id) VALUES ($1, $2, $3, 'dirty', 'killed', 0, 'cut-run')",
        m->version, m->name, m->checksum);
    tx.commit();
  }

  absl::StatusOr<std::string> Resume(int64_t version) {
    RepairRequest request;
    request.action = RepairRequest::Action::kResume;
    request.version = version;
    request.actor = "operator";
    return runner_->Repair(request, nullptr);
  }

  std::string Row(int64_t version) {
    return db_->Query(absl::StrCat("SELECT state || '/' || statements_done FROM "
                                   "schemagate.migrations WHERE version = ",
                                   version));
  }

  std::string IndexValidity(const std::string& qualified) {
    return db_->Query(absl::StrCat("SELECT indisvalid FROM pg_index WHERE indexrelid = "
                                   "to_regclass('",
                                   qualified, "')"));
  }

  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<PgStore> store_;
  TempDir dir_;
  MigrationSet set_;
  std::unique_ptr<Runner> runner_;
};

TEST_F(ResumeTest, ACreateIndexConcurrentlyThatHadCompletedIsSkippedAndTheRestRuns) {
  dir_.Write("0001_big.up.sql", "CREATE TABLE big (id int, v int);\n");
  dir_.Write("0002_idx.up.sql",
             "-- schemagate:no-transaction\n"
             "CREATE INDEX CONCURRENTLY big_v ON big (v);\n"
             "CREATE INDEX CONCURRENTLY big_id ON big (id);\n");
  ApplyBelowAndCut(2);
  db_->Exec("CREATE INDEX big_v ON big (v)");  // what the backend finished

  absl::StatusOr<std::string> resumed = Resume(2);
  ASSERT_TRUE(resumed.ok()) << resumed.status();  // before: 42P07 "already exists"
  EXPECT_THAT(*resumed, HasSubstr("statement 1 had completed"));
  EXPECT_THAT(*resumed, HasSubstr("public.big_v exists and is valid"));
  EXPECT_EQ(Row(2), "applied/2");
  EXPECT_EQ(IndexValidity("public.big_v"), "t");
  EXPECT_EQ(IndexValidity("public.big_id"), "t");
}

TEST_F(ResumeTest, AnInvalidIndexACutCreateLeftIsDroppedAndRebuilt) {
  dir_.Write("0001_big.up.sql", "CREATE TABLE big (id int, v int);\n");
  dir_.Write("0002_idx.up.sql",
             "-- schemagate:no-transaction\n"
             "CREATE UNIQUE INDEX CONCURRENTLY big_v ON big (v);\n");
  ApplyBelowAndCut(2);
  // A failed build leaves the index behind invalid, as a cut one does.
  db_->Exec("INSERT INTO big VALUES (1, 1), (2, 1)");
  EXPECT_FALSE(testing::TryQuery(db_->url(), "CREATE UNIQUE INDEX CONCURRENTLY big_v ON big (v)")
                   .has_value());
  ASSERT_EQ(IndexValidity("public.big_v"), "f");
  db_->Exec("DELETE FROM big WHERE id = 2");

  absl::StatusOr<std::string> resumed = Resume(2);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_THAT(*resumed, HasSubstr("dropped invalid index public.big_v first"));
  EXPECT_EQ(Row(2), "applied/1");
  EXPECT_EQ(IndexValidity("public.big_v"), "t");
}

TEST_F(ResumeTest, AnIndexOfThatNameOnAnotherTableIsNotTakenForTheStatementsWork) {
  dir_.Write("0001_big.up.sql", "CREATE TABLE big (id int, v int);\nCREATE TABLE other (v int);\n");
  dir_.Write("0002_idx.up.sql",
             "-- schemagate:no-transaction\n"
             "CREATE INDEX CONCURRENTLY big_v ON big (v);\n");
  ApplyBelowAndCut(2);
  db_->Exec("CREATE INDEX big_v ON other (v)");

  absl::StatusOr<std::string> resumed = Resume(2);
  ASSERT_FALSE(resumed.ok());
  EXPECT_THAT(resumed.status().message(), HasSubstr("42P07"));
  EXPECT_EQ(Row(2), "dirty/0");
}

TEST_F(ResumeTest, TheTablesSchemaIsResolvedAsTheStatementResolvesIt) {
  dir_.Write("0001_big.up.sql",
             "CREATE SCHEMA app;\nCREATE TABLE app.big (v int);\nCREATE TABLE big (v int);\n");
  dir_.Write("0002_idx.up.sql",
             "-- schemagate:no-transaction\n"
             "CREATE INDEX CONCURRENTLY big_v ON app.big (v);\n"
             "CREATE INDEX CONCURRENTLY big_w ON app.big (v);\n");
  ApplyBelowAndCut(2);
  // public.big_v on public.big is not app.big's index: the statement runs.
  db_->Exec("CREATE INDEX big_v ON public.big (v)");
  absl::StatusOr<std::string> resumed = Resume(2);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_THAT(*resumed, Not(HasSubstr("had completed")));
  EXPECT_EQ(IndexValidity("app.big_v"), "t");
  EXPECT_EQ(IndexValidity("app.big_w"), "t");
  EXPECT_EQ(Row(2), "applied/2");
}

TEST_F(ResumeTest, ADropIndexConcurrentlyThatHadCompletedIsSkipped) {
  dir_.Write("0001_big.up.sql", "CREATE TABLE big (v int);\nCREATE INDEX big_v ON big (v);\n");
  dir_.Write("0002_drop.up.sql",
             "-- schemagate:no-transaction\n"
             "DROP INDEX CONCURRENTLY big_v;\n"
             "CREATE INDEX CONCURRENTLY big_v2 ON big (v);\n");
  ApplyBelowAndCut(2);
  db_->Exec("DROP INDEX big_v");

  absl::StatusOr<std::string> resumed = Resume(2);
  ASSERT_TRUE(resumed.ok()) << resumed.status();  // before: 42704 "does not exist"
  EXPECT_THAT(*resumed, HasSubstr("index big_v is gone"));
  EXPECT_EQ(Row(2), "applied/2");
  EXPECT_EQ(IndexValidity("public.big_v2"), "t");
}

TEST_F(ResumeTest, AnInvalidIndexIsRebuiltAlsoUnderIfNotExistsAndADropNotYetDoneRuns) {
  dir_.Write("0001_big.up.sql",
             "CREATE TABLE big (v int);\nINSERT INTO big VALUES (1), (1);\n"
             "CREATE INDEX big_old ON big (v);\n");
  dir_.Write("0002_idx.up.sql",
             "-- schemagate:no-transaction\n"
             "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS big_v ON big (v);\n"
             "DROP INDEX CONCURRENTLY big_old;\n"
             "DROP INDEX CONCURRENTLY IF EXISTS big_gone;\n");
  ApplyBelowAndCut(2);
  EXPECT_FALSE(testing::TryQuery(db_->url(), "CREATE UNIQUE INDEX CONCURRENTLY big_v ON big (v)")
                   .has_value());
  ASSERT_EQ(IndexValidity("public.big_v"), "f");
  db_->Exec("DELETE FROM big WHERE ctid = (SELECT max(ctid) FROM big)");

  // IF NOT EXISTS alone would keep the invalid index and report success.
  absl::StatusOr<std::string> resumed = Resume(2);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_THAT(*resumed, HasSubstr("dropped invalid index public.big_v first"));
  EXPECT_EQ(Row(2), "applied/3");
  EXPECT_EQ(IndexValidity("public.big_v"), "t");
  EXPECT_EQ(db_->Query("SELECT to_regclass('public.big_old')"), "");
}

// A rollback cut part-way leaves its row dirty with the down's count: resume
// finishes the down file (and removes the row), never the up's statements.
TEST_F(ResumeTest, ACutRollbackResumesItsDownFile) {
  dir_.Write("0001_big.up.sql", "CREATE TABLE big (id int, v int);\nCREATE TABLE extra (id int);\n");
  dir_.Write("0002_idx.up.sql",
             "-- schemagate:no-transaction\n"
             "CREATE INDEX CONCURRENTLY big_v ON big (v);\n"
             "CREATE INDEX CONCURRENTLY big_id ON big (id);\n");
  dir_.Write("0002_idx.down.sql",
             "-- schemagate:no-transaction\n"
             "DROP INDEX CONCURRENTLY big_id;\n"
             "DROP INDEX CONCURRENTLY big_v;\n");
  dir_.Write("0003_later.up.sql", "SELECT 1;\n");
  ApplyBelowAndCut(3);  // applies 1 and 2; only 3's row is cut, and removed again
  db_->Exec("DELETE FROM schemagate.migrations WHERE version = 3");
  db_->Exec("DROP INDEX big_v");  // the down's second statement will fail
  RollbackRequest rollback;
  rollback.target_version = 1;
  rollback.actor = "operator";
  absl::StatusOr<RunOutcome> rolled = runner_->Rollback(rollback, nullptr, nullptr);
  EXPECT_FALSE(rolled.ok() && rolled->applied == 1);
  ASSERT_EQ(Row(2), "dirty/1");
  EXPECT_EQ(db_->Query("SELECT direction FROM schemagate.migrations WHERE version = 2"), "down");
  db_->Exec("CREATE INDEX big_v ON big (v)");

  absl::StatusOr<std::string> resumed = Resume(2);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_THAT(*resumed, HasSubstr("resumed the rollback of"));
  EXPECT_THAT(*resumed, HasSubstr("at statement 2 of 2"));
  EXPECT_EQ(Row(2), "");
  EXPECT_EQ(db_->Query("SELECT to_regclass('public.big_v')"), "");
  EXPECT_EQ(db_->Query("SELECT to_regclass('public.big_id')"), "");
}

}  // namespace
}  // namespace schemagate
