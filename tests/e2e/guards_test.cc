// Guard rails end to end with the real binaries: a rolling redeploy after a
// fixed migration (the coordinator not yet redeployed holds an older file,
// not a conflict), out-of-order versions, rollbacks that would strand live
// instances, and a database whose tables schemagate never recorded.
#include <signal.h>

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
using ::schemagate::testing::RunBinary;
using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;
using ::schemagate::testing::WaitUntil;
using ::testing::HasSubstr;
using ::testing::Not;

class GuardsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    db_ = std::make_unique<TestDatabase>();
  }
  static int Ctl(const std::string& address, std::vector<std::string> args, std::string* out) {
    args.insert(args.begin(), BinaryPath("schemagatectl"));
    args.push_back("--coordinator");
    args.push_back(address);
    return RunBinary(args, out);
  }
  // An agent for the files of `dir` that prints `banner` once ready, then
  // keeps its instance live (sleep) while it runs.
  static std::unique_ptr<ChildProcess> Agent(const std::string& address, const TempDir& dir,
                                             const std::string& app_version,
                                             const std::string& banner) {
    return std::make_unique<ChildProcess>(std::vector<std::string>{
        BinaryPath("schemagate-agent"), "wait", "--coordinator", address, "--migrations-dir",
        dir.path(), "--app", "shop", "--app-version", app_version, "--timeout", "60s", "--",
        "sh", "-c", absl::StrCat("echo ", banner, "; exec sleep 600")});
  }
  // Whether `version` is recorded applied (false before the bookkeeping exists).
  bool Applied(int64_t version) {
    return Query("SELECT to_regclass('schemagate.migrations')") != "" &&
           testing::IsApplied(*db_, version);
  }
  std::string Query(const std::string& sql) { return db_->Query(sql); }
  bool BookkeepingHas(const std::string& sql) {
    return Query("SELECT to_regclass('schemagate.meta')") != "" && Query(sql) == "t";
  }

  std::unique_ptr<TestDatabase> db_;
};

// Issue item 7. Coordinators "old" and "new" share a database; both had a
// broken version 2, which failed. The fix is deployed to "new" first, which
// applies it. "old", not yet redeployed, has the text that failed: that is
// an older file, not an edited one; its status is current (exit 0) with a
// note to redeploy it, and its agents start.
TEST_F(GuardsTest, ARollingRedeployAfterAFixLeavesTheOldCoordinatorCurrent) {
  TempDir old_dir, new_dir;
  for (const TempDir* dir : {&old_dir, &new_dir}) {
    dir->Write("1_t.up.sql", "CREATE TABLE t(id int);\n");
  }
  old_dir.Write("2_u.up.sql", "ALTER TABLE missing ADD COLUMN x int;\n");
  new_dir.Write("2_u.up.sql", "CREATE TABLE u(id int);\n");
  CoordinatorProcess old_c(db_->url(), old_dir.path(), {"--id", "old"});
  ASSERT_TRUE(WaitUntil(
      [&] { return BookkeepingHas("SELECT failed_version = 2 FROM schemagate.meta"); },
      absl::Seconds(20)))
      << old_c.process().Log();
  std::string out;
  EXPECT_TRUE(WaitUntil([&] { return Ctl(old_c.address(), {"status"}, &out) == 5; },
                        absl::Seconds(20)))
      << out;
  EXPECT_THAT(out, HasSubstr("FAILED"));

  CoordinatorProcess new_c(db_->url(), new_dir.path(), {"--id", "new"});
  ASSERT_TRUE(WaitUntil([&] { return Applied(2); }, absl::Seconds(20))) << new_c.process().Log();
  ASSERT_TRUE(WaitUntil(
      [&] {
        Ctl(old_c.address(), {"status"}, &out);
        return out.find("note:") != std::string::npos;
      },
      absl::Seconds(20)))
      << out;
  EXPECT_EQ(Ctl(old_c.address(), {"status"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("CURRENT"));
  EXPECT_THAT(out, Not(HasSubstr("MISMATCH")));
  EXPECT_THAT(out, Not(HasSubstr("CONFLICT")));
  EXPECT_THAT(out, Not(HasSubstr("edited after it was applied")));
  EXPECT_THAT(out, HasSubstr("older text that failed"));
  EXPECT_THAT(out, HasSubstr("redeploy this coordinator"));
  EXPECT_EQ(Ctl(old_c.address(), {"migrations"}, &out), 0) << out;
  EXPECT_THAT(out, Not(HasSubstr("CHECKSUM MISMATCH")));
  // validate still says what to do, and never suggests --mark-applied.
  EXPECT_EQ(Ctl(old_c.address(), {"validate"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("older text that failed"));
  EXPECT_THAT(out, Not(HasSubstr("edited after it was applied")));
  // Apps of either release start, on either coordinator.
  auto old_app = Agent(old_c.address(), old_dir, "1.0", "old-app-up");
  auto new_app = Agent(old_c.address(), new_dir, "1.1", "new-app-up");
  EXPECT_TRUE(old_app->WaitForLog("old-app-up", absl::Seconds(30))) << old_app->Log();
  EXPECT_TRUE(new_app->WaitForLog("new-app-up", absl::Seconds(30))) << new_app->Log();
  EXPECT_THAT(old_app->Log(), Not(HasSubstr("MISMATCH")));
  // A text that never failed and differs from the applied one is still an edit.
  old_dir.Write("2_u.up.sql", "CREATE TABLE u(id bigint);\n");
  EXPECT_EQ(Ctl(old_c.address(), {"validate"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("edited after it was applied"));
}

// Issue item 7, when the redeployed coordinator's fix fails too: each
// coordinator's text failed, so neither retries the other's failure (they
// would take turns forever); both report FAILED.
TEST_F(GuardsTest, TwoCoordinatorsWithDifferentBrokenFilesDoNotTakeTurnsRetrying) {
  TempDir old_dir, new_dir;
  for (const TempDir* dir : {&old_dir, &new_dir}) {
    dir->Write("1_t.up.sql", "CREATE TABLE t(id int);\n");
  }
  old_dir.Write("2_u.up.sql", "ALTER TABLE missing ADD COLUMN x int;\n");
  new_dir.Write("2_u.up.sql", "ALTER TABLE still_missing ADD COLUMN x int;\n");
  const std::vector<std::string> flags = {"--resync-interval", "200ms"};
  std::vector<std::string> old_flags = flags, new_flags = flags;
  old_flags.insert(old_flags.end(), {"--id", "old"});
  new_flags.insert(new_flags.end(), {"--id", "new"});
  CoordinatorProcess old_c(db_->url(), old_dir.path(), old_flags);
  ASSERT_TRUE(WaitUntil(
      [&] { return BookkeepingHas("SELECT failed_by = 'old' FROM schemagate.meta"); },
      absl::Seconds(20)))
      << old_c.process().Log();
  CoordinatorProcess new_c(db_->url(), new_dir.path(), new_flags);
  ASSERT_TRUE(WaitUntil(
      [&] { return BookkeepingHas("SELECT failed_by = 'new' FROM schemagate.meta"); },
      absl::Seconds(20)))
      << new_c.process().Log();
  // "old" sees the failure of "new"'s text and says why it does not retry its own.
  std::string out;
  ASSERT_TRUE(WaitUntil(
      [&] {
        Ctl(old_c.address(), {"status"}, &out);
        return out.find("still_missing") != std::string::npos;
      },
      absl::Seconds(20)))
      << out;
  // Many resyncs later (each one asks whether to run), still one failure each.
  const std::string events =
      "SELECT count(*) FROM schemagate.events WHERE kind = 'failure' AND version = 2";
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(Query(events), "2");
  EXPECT_EQ(Query("SELECT failed_by FROM schemagate.meta"), "new");
  EXPECT_EQ(Ctl(old_c.address(), {"status"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("FAILED"));
  EXPECT_EQ(Ctl(new_c.address(), {"status"}, &out), 5) << out;
  auto agent = Agent(old_c.address(), old_dir, "1.0", "up");
  EXPECT_EQ(agent->Wait(absl::Seconds(30)), 5) << agent->Log();
  EXPECT_THAT(agent->Log(), HasSubstr("older text that failed before"));
}

// Issue item 9a: a version added below the applied head is refused by
// automatic runs and operators alike, and every command says so, until the
// coordinator runs with --allow-out-of-order.
TEST_F(GuardsTest, AnOutOfOrderVersionIsRefusedUntilAllowed) {
  TempDir dir;
  dir.Write("1_a.up.sql", "CREATE TABLE a(id int);\n");
  dir.Write("3_c.up.sql", "CREATE TABLE c(id int);\n");
  {
    CoordinatorProcess c(db_->url(), dir.path(), {});
    ASSERT_TRUE(WaitUntil([&] { return Applied(3); }, absl::Seconds(20))) << c.process().Log();
  }
  dir.Write("2_b.up.sql", "CREATE TABLE b(id int);\n");
  CoordinatorProcess c(db_->url(), dir.path(), {});
  std::string out;
  EXPECT_EQ(Ctl(c.address(), {"status"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("REFUSED"));
  EXPECT_THAT(out, HasSubstr("out-of-order migration(s) 2"));
  EXPECT_THAT(out, HasSubstr("--allow-out-of-order"));
  EXPECT_EQ(Ctl(c.address(), {"validate"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("out-of-order migration(s) 2"));
  EXPECT_EQ(Ctl(c.address(), {"plan"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("nothing will run: refusing out-of-order"));
  EXPECT_EQ(Ctl(c.address(), {"apply", "--dry-run"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("--allow-out-of-order"));
  EXPECT_EQ(Ctl(c.address(), {"apply"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("out-of-order migration(s) 2"));
  EXPECT_FALSE(Applied(2));
  EXPECT_EQ(Query("SELECT to_regclass('public.b')"), "");
  auto agent = Agent(c.address(), dir, "1.0", "up");
  EXPECT_EQ(agent->Wait(absl::Seconds(30)), 5) << agent->Log();
  EXPECT_THAT(agent->Log(), HasSubstr("--allow-out-of-order"));

  CoordinatorProcess allowed(db_->url(), dir.path(), {"--allow-out-of-order"});
  ASSERT_TRUE(WaitUntil([&] { return Applied(2); }, absl::Seconds(20)))
      << allowed.process().Log();
  EXPECT_EQ(Ctl(allowed.address(), {"status"}, &out), 0) << out;
  EXPECT_EQ(Ctl(allowed.address(), {"validate"}, &out), 0) << out;
}

// Issue item 9b: a rollback below what a live instance needs names it and
// is refused, in the dry run and for real, unless --force.
TEST_F(GuardsTest, ARollbackThatStrandsALiveInstanceNeedsForce) {
  TempDir dir;
  for (int v = 1; v <= 3; ++v) {
    dir.Write(absl::StrCat(v, "_t", v, ".up.sql"), absl::StrCat("CREATE TABLE t", v, "(id int);\n"));
    dir.Write(absl::StrCat(v, "_t", v, ".down.sql"), absl::StrCat("DROP TABLE t", v, ";\n"));
  }
  CoordinatorProcess c(db_->url(), dir.path(), {});
  auto app = Agent(c.address(), dir, "2.0", "app-up");
  ASSERT_TRUE(app->WaitForLog("app-up", absl::Seconds(30))) << app->Log();
  std::string out;
  ASSERT_TRUE(WaitUntil(
      [&] {
        Ctl(c.address(), {"instances"}, &out);
        return out.find("1 live instance(s)") != std::string::npos;
      },
      absl::Seconds(20)))
      << out;
  EXPECT_EQ(Ctl(c.address(), {"rollback", "--target", "1", "--dry-run"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("strands 1 live instance(s)"));
  EXPECT_THAT(out, HasSubstr("shop 2.0 (id "));
  EXPECT_THAT(out, HasSubstr("needs 3"));
  EXPECT_THAT(out, HasSubstr("--force"));
  EXPECT_EQ(Ctl(c.address(), {"rollback", "--target", "1"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("strands 1 live instance(s)"));
  EXPECT_TRUE(Applied(3));
  EXPECT_TRUE(Applied(2));
  // Nothing above what it needs: no one is stranded.
  EXPECT_EQ(Ctl(c.address(), {"rollback", "--target", "3", "--dry-run"}, &out), 0) << out;
  EXPECT_EQ(Ctl(c.address(), {"rollback", "--target", "1", "--dry-run", "--force"}, &out), 0)
      << out;
  EXPECT_THAT(out, HasSubstr("with --force it strands 1"));
  EXPECT_EQ(Ctl(c.address(), {"rollback", "--target", "1", "--force"}, &out), 0) << out;
  EXPECT_FALSE(Applied(2));
  EXPECT_FALSE(Applied(3));
  EXPECT_EQ(Ctl(c.address(), {"history", "--limit", "20"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("rollback_forced"));
  app->Signal(SIGTERM);
  app->Wait(absl::Seconds(10));
}

// Issue item 9c: on a database that already has the tables (made by
// another tool), nothing runs until `baseline` adopts it; every command
// says so instead of failing on "relation already exists".
TEST_F(GuardsTest, ADatabaseWithUnrecordedTablesIsRefusedUntilBaseline) {
  db_->Exec("CREATE TABLE users(id int); CREATE TABLE documents(id int)");
  TempDir dir;
  dir.Write("1_baseline.up.sql", "CREATE TABLE users(id int);\nCREATE TABLE documents(id int);\n");
  dir.Write("2_tags.up.sql", "CREATE TABLE tags(id int);\n");
  CoordinatorProcess c(db_->url(), dir.path(), {});
  std::string out;
  ASSERT_TRUE(WaitUntil(
      [&] {
        Ctl(c.address(), {"status"}, &out);
        return out.find("REFUSED") != std::string::npos;
      },
      absl::Seconds(20)))
      << out;
  EXPECT_EQ(Ctl(c.address(), {"status"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("2 table(s) (public.documents, public.users)"));
  EXPECT_THAT(out, HasSubstr("schemagatectl baseline --version V"));
  EXPECT_EQ(Ctl(c.address(), {"validate"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("baseline"));
  EXPECT_EQ(Ctl(c.address(), {"apply"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("baseline"));
  EXPECT_THAT(out, Not(HasSubstr("already exists")));
  EXPECT_EQ(Query("SELECT count(*) FROM schemagate.events WHERE kind = 'failure'"), "0");
  EXPECT_FALSE(Applied(1));

  EXPECT_EQ(Ctl(c.address(), {"baseline", "--version", "1"}, &out), 0) << out;
  ASSERT_TRUE(WaitUntil([&] { return Applied(2); }, absl::Seconds(20))) << c.process().Log();
  // The coordinator's snapshot follows the run's NOTIFY a moment later.
  EXPECT_TRUE(WaitUntil([&] { return Ctl(c.address(), {"status"}, &out) == 0; },
                        absl::Seconds(20)))
      << out;
}

// The escape for a database shared with another app's tables.
TEST_F(GuardsTest, AllowNonEmptyRunsBesideAnotherAppsTables) {
  db_->Exec("CREATE SCHEMA billing; CREATE TABLE billing.invoices(id int)");
  TempDir dir;
  dir.Write("1_a.up.sql", "CREATE TABLE a(id int);\n");
  CoordinatorProcess c(db_->url(), dir.path(), {"--allow-non-empty"});
  ASSERT_TRUE(WaitUntil([&] { return Applied(1); }, absl::Seconds(20))) << c.process().Log();
}

}  // namespace
}  // namespace schemagate
