// What agents and operators are told while runs happen, end to end with the
// real binaries (DESIGN.md "One run plan": running is not failing).
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::BinaryPath;
using ::schemagate::testing::ChildProcess;
using ::schemagate::testing::CoordinatorProcess;
using ::schemagate::testing::EnvInt;
using ::schemagate::testing::RunBinary;
using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;
using ::schemagate::testing::WaitUntil;
using ::testing::HasSubstr;
using ::testing::Not;

class RunPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    db_ = std::make_unique<TestDatabase>();
  }
  int Ctl(const std::string& address, std::vector<std::string> args, std::string* out) {
    args.insert(args.begin(), BinaryPath("schemagatectl"));
    args.push_back("--coordinator");
    args.push_back(address);
    return RunBinary(args, out);
  }
  std::vector<std::string> Agent(const std::string& address, const std::string& marker) {
    return {BinaryPath("schemagate-agent"), "wait", "--coordinator", address, "--migrations-dir",
            dir_.path(), "--timeout", "60s", "--", "sh", "-c", absl::StrCat("echo ", marker)};
  }
  std::unique_ptr<TestDatabase> db_;
  TempDir dir_;
};

// The repro of issue 11 item 1: every agent waiting through a
// no-transaction migration was told FAILED and exited 5.
TEST_F(RunPlanTest, AgentsWaitThroughANoTransactionMigrationAndStartTheirApp) {
  const int kAgents = EnvInt("SCHEMAGATE_E2E_NOTX_AGENTS", 20);
  dir_.Write("1_t.up.sql", "CREATE TABLE t(id int);\n");
  dir_.Write("2_idx.up.sql",
             "-- schemagate:no-transaction\n"
             "CREATE INDEX CONCURRENTLY t_id ON t(id);\n"
             "SELECT pg_sleep(3);\n");
  CoordinatorProcess c(db_->url(), dir_.path(), {"--apply", "manual"});
  std::string out;
  ASSERT_EQ(Ctl(c.address(), {"apply", "--target", "1"}, &out), 0) << out;
  std::vector<std::unique_ptr<ChildProcess>> agents;
  for (int i = 0; i < kAgents; ++i) {
    agents.push_back(std::make_unique<ChildProcess>(Agent(c.address(), "started")));
  }
  ChildProcess apply({BinaryPath("schemagatectl"), "apply", "--coordinator", c.address()});
  // While the CONCURRENTLY migration runs: not current (1), never failed (5).
  ASSERT_TRUE(WaitUntil(
      [&] {
        return db_->Query("SELECT count(*) FROM schemagate.migrations WHERE state = 'dirty'") == "1";
      },
      absl::Seconds(20)));
  EXPECT_EQ(Ctl(c.address(), {"status"}, &out), 1) << out;
  EXPECT_THAT(out, HasSubstr("RUNNING"));
  EXPECT_THAT(out, Not(HasSubstr("FAILED")));
  EXPECT_EQ(apply.Wait(absl::Seconds(60)), 0) << apply.Log();
  for (auto& agent : agents) {
    EXPECT_EQ(agent->Wait(absl::Seconds(60)), 0) << agent->Log();
    EXPECT_THAT(agent->Log(), HasSubstr("started"));
    EXPECT_THAT(agent->Log(), Not(HasSubstr("FAILED")));
  }
  EXPECT_EQ(Ctl(c.address(), {"status"}, &out), 0) << out;
}

// Issue 11 items 2 and 5: a fixed file is seen and retried; no waiting
// agent is ever told FAILED once the file is fixed.
TEST_F(RunPlanTest, AFixedFileIsRetriedAndAgentsNeverSeeFailedAfterTheFix) {
  dir_.Write("1_t.up.sql", "CREATE TABLE t(id int);\n");
  dir_.Write("2_bad.up.sql", "ALTER TABLE missing ADD COLUMN x int;\n");
  // The fixed coordinator comes back on the first one's address.
  std::string address;
  {
    CoordinatorProcess c(db_->url(), dir_.path(), {});
    address = c.address();
    ASSERT_TRUE(WaitUntil(
        [&] {
          return db_->Query("SELECT to_regclass('schemagate.meta')") != "" &&
                 db_->Query("SELECT failed_version FROM schemagate.meta") == "2";
        },
        absl::Seconds(20)))
        << c.process().Log();
  }
  dir_.Write("2_bad.up.sql", "CREATE TABLE fixed(id int);\n");
  // Agents that wait from before the fixed coordinator starts.
  std::vector<std::unique_ptr<ChildProcess>> agents;
  for (int i = 0; i < 5; ++i) {
    agents.push_back(std::make_unique<ChildProcess>(Agent(address, "started")));
  }
  CoordinatorProcess fixed(db_->url(), dir_.path(), {}, address);
  for (auto& agent : agents) {
    EXPECT_EQ(agent->Wait(absl::Seconds(60)), 0) << agent->Log();
    EXPECT_THAT(agent->Log(), Not(HasSubstr("FAILED")));
  }
  EXPECT_EQ(db_->Query("SELECT to_regclass('public.fixed')"), "fixed");
}

TEST_F(RunPlanTest, AFileFixedInPlaceIsAppliedByTheRunningCoordinator) {
  dir_.Write("1_t.up.sql", "CREATE TABLE t(id int);\n");
  dir_.Write("2_bad.up.sql", "ALTER TABLE missing ADD COLUMN x int;\n");
  CoordinatorProcess c(db_->url(), dir_.path(), {"--apply", "manual"});
  std::string out;
  EXPECT_EQ(Ctl(c.address(), {"apply"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("42P01"));
  // A broken edit: the coordinator keeps its set and says why.
  dir_.Write("2_bad.up.sql", "-- schemagate:no-such-directive\nSELECT 1;\n");
  EXPECT_EQ(Ctl(c.address(), {"validate"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("does not load"));
  EXPECT_THAT(out, HasSubstr("2_bad.up.sql"));
  EXPECT_EQ(Ctl(c.address(), {"status"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("does not load"));
  // Fixed in place: the operator's apply runs the new text.
  dir_.Write("2_bad.up.sql", "CREATE TABLE fixed(id int);\n");
  EXPECT_EQ(Ctl(c.address(), {"apply"}, &out), 0) << out;
  EXPECT_EQ(db_->Query("SELECT to_regclass('public.fixed')"), "fixed");
  EXPECT_EQ(Ctl(c.address(), {"status"}, &out), 0) << out;
  EXPECT_THAT(out, Not(HasSubstr("does not load")));
}

// Issue 12 item 2: nothing can need the old schema on a fresh database, so
// breaking migrations do not wait out the grace period there.
TEST_F(RunPlanTest, AFreshDatabaseDoesNotWaitTheGracePeriodForBreakingMigrations) {
  dir_.Write("1_t.up.sql", "CREATE TABLE t(id int, old int);\n");
  dir_.Write("2_drop.up.sql", "-- schemagate:breaking\nALTER TABLE t DROP COLUMN old;\n");
  dir_.Write("3_u.up.sql", "CREATE TABLE u(id int);\n");
  dir_.Write("4_drop.up.sql", "-- schemagate:breaking\nDROP TABLE u;\n");
  const absl::Time start = absl::Now();
  CoordinatorProcess c(db_->url(), dir_.path(), {"--breaking-grace", "60s"});
  ASSERT_TRUE(WaitUntil(
      [&] {
        return db_->Query("SELECT to_regclass('schemagate.migrations')") != "" &&
               db_->Query("SELECT count(*) FROM schemagate.migrations") == "4";
      },
      absl::Seconds(30)))
      << c.process().Log();
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
}

// Issue 12 item 3: timestamp versions (what `schemagatectl new` writes) on
// every command that takes a version.
TEST_F(RunPlanTest, EveryCommandTakesATimestampVersion) {
  dir_.Write("20261202044442_a.up.sql", "CREATE TABLE a(id int);\n");
  dir_.Write("20261202044442_a.down.sql", "DROP TABLE a;\n");
  dir_.Write("20261202050000_b.up.sql", "CREATE TABLE b(id int);\n");
  dir_.Write("20261202050000_b.down.sql", "DROP TABLE b;\n");
  CoordinatorProcess c(db_->url(), dir_.path(), {"--apply", "manual"});
  std::string out;
  EXPECT_EQ(Ctl(c.address(), {"plan", "--target", "20261202044442"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("20261202044442"));
  EXPECT_EQ(Ctl(c.address(), {"apply", "--target", "20261202044442"}, &out), 0) << out;
  EXPECT_EQ(Ctl(c.address(), {"history", "--version", "20261202044442"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("apply"));
  EXPECT_EQ(Ctl(c.address(), {"apply"}, &out), 0) << out;
  EXPECT_EQ(Ctl(c.address(), {"rollback", "--target", "20261202044442", "--dry-run"}, &out), 0)
      << out;
  EXPECT_THAT(out, HasSubstr("20261202050000"));
  EXPECT_EQ(Ctl(c.address(), {"rollback", "--target", "20261202044442"}, &out), 0) << out;
  EXPECT_EQ(Ctl(c.address(), {"history", "--version", "20261202050000"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("rollback"));
}

}  // namespace
}  // namespace schemagate
