// What a new user's walkthrough of the docs found (issue 12 acceptance),
// end to end with the real binaries: exit codes of refused repairs, a
// refused repair that must not bless drift, the held-back count of an apply,
// and what schemagatectl says when the coordinator's database is down.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
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
using ::schemagate::testing::WithDatabase;
using ::testing::HasSubstr;
using ::testing::Not;

class WalkthroughTest : public ::testing::Test {
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
  std::unique_ptr<TestDatabase> db_;
  TempDir dir_;
};

// A repair asked of a row it does not apply to is a usage-level refusal
// (exit 2, like an unknown version), not "an operator must act" (5); and it
// changes nothing, so drift found before it is still drift after it.
TEST_F(WalkthroughTest, ARepairOfARowItDoesNotApplyToExitsTwoAndKeepsDrift) {
  dir_.Write("20261202044442_t.up.sql", "CREATE TABLE t(id int);\n");
  dir_.Write("20261202050000_idx.up.sql",
             "-- schemagate:no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t(id);\n");
  CoordinatorProcess c(db_->url(), dir_.path(), {"--apply", "manual"});
  std::string out;
  ASSERT_EQ(Ctl(c.address(), {"apply"}, &out), 0) << out;
  db_->Exec("CREATE TABLE handmade(id int)");
  ASSERT_EQ(Ctl(c.address(), {"validate"}, &out), 5) << out;
  ASSERT_THAT(out, HasSubstr("public.handmade"));
  EXPECT_EQ(Ctl(c.address(), {"repair", "--resume", "20261202050000"}, &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("20261202050000 is not dirty"));
  EXPECT_EQ(Ctl(c.address(), {"repair", "--clear-dirty", "20261202050000"}, &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("is not dirty"));
  EXPECT_EQ(Ctl(c.address(), {"repair", "--mark-not-applied", "20261202050001"}, &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("20261202050001 is not recorded as applied"));
  EXPECT_EQ(Ctl(c.address(), {"validate"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("public.handmade"));
}

// The RUN_FINISHED message of an apply counts every migration it held back
// (a breaking one and the one behind it), as its dry run does.
TEST_F(WalkthroughTest, AnApplyCountsEveryMigrationItHeldBack) {
  dir_.Write("1_t.up.sql", "CREATE TABLE t(id int, a int, b int);\n");
  dir_.Write("20261202060000_drop_a.up.sql",
             "-- schemagate:breaking\nALTER TABLE t DROP COLUMN a;\n");
  dir_.Write("20261202060100_drop_b.up.sql",
             "-- schemagate:breaking\nALTER TABLE t DROP COLUMN b;\n");
  CoordinatorProcess c(db_->url(), dir_.path(), {"--apply", "manual"});
  std::string out;
  ASSERT_EQ(Ctl(c.address(), {"apply", "--target", "1"}, &out), 0) << out;
  ChildProcess old_app({BinaryPath("schemagate-agent"), "wait", "--coordinator", c.address(),
                        "--known", "1", "--instance-id", "old-1", "--", "sh", "-c",
                        "echo up; while true; do sleep 0.05; done"});
  ASSERT_TRUE(old_app.WaitForLog("up", absl::Seconds(30))) << old_app.Log();
  ASSERT_TRUE(
      WaitUntil([&] { return db_->Query("SELECT count(*) FROM schemagate.instances") == "1"; },
                absl::Seconds(20)));
  EXPECT_EQ(Ctl(c.address(), {"apply", "--dry-run", "--output", "json"}, &out), 1) << out;
  EXPECT_THAT(out, HasSubstr("\"held_back\":2"));
  EXPECT_EQ(Ctl(c.address(), {"apply", "--output", "json"}, &out), 1) << out;
  EXPECT_THAT(out, HasSubstr("\"held_back\":2"));
  EXPECT_THAT(out, HasSubstr("old-1"));
}

// A failed backup is reported as one (BACKUP_FAILED), not as a backup taken;
// the run stops before it changes anything (exit 5).
TEST_F(WalkthroughTest, AFailedBackupHasItsOwnProgressKind) {
  dir_.Write("20261202044442_t.up.sql", "CREATE TABLE t(id int);\n");
  CoordinatorProcess c(db_->url(), dir_.path(),
                       {"--apply", "manual", "--backup-command", "echo boom >&2; exit 3"});
  std::string out;
  EXPECT_EQ(Ctl(c.address(), {"apply", "--output", "json"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("\"kind\":\"BACKUP_FAILED\""));
  EXPECT_THAT(out, Not(HasSubstr("BACKUP_TAKEN")));
  EXPECT_THAT(out, HasSubstr("boom"));
  EXPECT_EQ(db_->Query("SELECT to_regclass('public.t')"), "");
}

// A coordinator that answers but cannot reach its database: exit 7, and the
// hint says so instead of asking whether schemagated runs.
TEST_F(WalkthroughTest, ACoordinatorWithoutItsDatabaseIsNotCalledUnreachable) {
  dir_.Write("20261202044442_t.up.sql", "CREATE TABLE t(id int);\n");
  // It never reports SERVING (its database is missing): take its address
  // from the "serving on" line.
  CoordinatorProcess c(WithDatabase(db_->url(), absl::StrCat(db_->name(), "_missing")), dir_.path(),
                       {}, "127.0.0.1:0", /*wait_until_serving=*/false);
  std::string out;
  for (std::vector<std::string> command : std::vector<std::vector<std::string>>{
           {"history", "--version", "20261202044442"}, {"validate"}, {"apply"}}) {
    EXPECT_EQ(Ctl(c.address(), command, &out), 7) << out;
    EXPECT_THAT(out, HasSubstr("is running but cannot reach its database"));
    EXPECT_THAT(out, Not(HasSubstr("is schemagated running")));
  }
  EXPECT_EQ(Ctl("127.0.0.1:1", {"history"}, &out), 7) << out;
  EXPECT_THAT(out, HasSubstr("is schemagated running"));
}

// A second schemagated given the address another one listens on refuses to
// start (gRPC's default SO_REUSEPORT let both serve one port, each taking
// part of the connections).
TEST_F(WalkthroughTest, ASecondCoordinatorOnTheSamePortRefusesToStart) {
  dir_.Write("20261202044442_t.up.sql", "CREATE TABLE t(id int);\n");
  CoordinatorProcess first(db_->url(), dir_.path(), {"--apply", "manual"});
  std::string out;
  const int code = RunBinary({BinaryPath("schemagated"), "--database-url", db_->url(),
                              "--migrations-dir", dir_.path(), "--listen", first.address(),
                              "--apply", "manual"},
                             &out);
  EXPECT_NE(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("cannot listen on " + first.address()));
  EXPECT_EQ(Ctl(first.address(), {"status"}, &out), 1) << out;  // the first still serves
}

// Metrics print whole versions in full (a 14-digit timestamp was 2.02612e+13),
// and status JSON gives each instance in the way its readiness state.
TEST_F(WalkthroughTest, MetricsPrintTimestampVersionsAndBlockingInstancesHaveAState) {
  dir_.Write("20261202044442_t.up.sql", "CREATE TABLE t(id int, a int);\n");
  dir_.Write("20261202060000_drop_a.up.sql",
             "-- schemagate:breaking\nALTER TABLE t DROP COLUMN a;\n");
  CoordinatorProcess c(db_->url(), dir_.path(),
                       {"--apply", "manual", "--metrics-listen", "127.0.0.1:0"});
  std::string out;
  ASSERT_EQ(Ctl(c.address(), {"apply", "--target", "20261202044442"}, &out), 0) << out;
  ChildProcess old_app({BinaryPath("schemagate-agent"), "wait", "--coordinator", c.address(),
                        "--known", "20261202044442", "--instance-id", "old-1", "--", "sh", "-c",
                        "echo up; while true; do sleep 0.05; done"});
  ASSERT_TRUE(old_app.WaitForLog("up", absl::Seconds(30))) << old_app.Log();
  ASSERT_TRUE(WaitUntil(
      [&] {
        Ctl(c.address(), {"status", "--output", "json"}, &out);
        return absl::StrContains(out, "old-1");
      },
      absl::Seconds(20)))
      << out;
  EXPECT_THAT(out, HasSubstr("\"state\": \"READY\""));
  EXPECT_THAT(out, Not(HasSubstr("UNSPECIFIED")));

  ASSERT_TRUE(c.process().WaitForLog("/metrics", absl::Seconds(10)));
  const std::string log = c.process().Log();
  const size_t at = log.find("metrics on http://");
  const std::string url = log.substr(at + 18, log.find('\n', at) - at - 18);
  std::string metrics;
  ASSERT_EQ(RunBinary({"/usr/bin/curl", "-sf", url}, &metrics), 0) << url;
  EXPECT_THAT(metrics, HasSubstr("schemagate_applied_version 20261202044442\n"));
  EXPECT_THAT(metrics, HasSubstr("schemagate_head_version 20261202060000\n"));
  EXPECT_THAT(metrics, Not(HasSubstr("e+13")));

  // The dry run's summary says once how many would apply and why the rest wait.
  EXPECT_EQ(Ctl(c.address(), {"apply", "--dry-run"}, &out), 1) << out;
  EXPECT_EQ(out.find("migration(s) would apply"), out.rfind("migration(s) would apply")) << out;
  EXPECT_THAT(out, HasSubstr("1 held back"));
}

}  // namespace
}  // namespace schemagate
