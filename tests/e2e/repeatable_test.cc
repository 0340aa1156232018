// Repeatable migrations end to end, with the real binaries: a view in
// repeatable/, three coordinators started together apply it exactly once;
// the view's file edited and the three redeployed, it is re-applied exactly
// once and history shows it; redeployed unchanged, nothing runs; a broken
// one makes the set FAILED with its SQLSTATE and an agent exits with the
// failed-migration code (DESIGN.md: 5).
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
using ::schemagate::testing::CoordinatorProcess;
using ::schemagate::testing::RunBinary;
using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;
using ::testing::HasSubstr;

std::vector<std::string> Args(const std::string& binary, std::vector<std::string> args) {
  args.insert(args.begin(), BinaryPath(binary));
  return args;
}

constexpr char kUsers[] = "CREATE TABLE users (id bigint PRIMARY KEY, name text);\n";
constexpr char kView[] =
    "-- the names, for reports\nCREATE OR REPLACE VIEW user_names AS SELECT name FROM users;\n";
constexpr char kEditedView[] =
    "-- the names, for reports\nDROP VIEW IF EXISTS user_names;\n"
    "CREATE VIEW user_names AS SELECT id, name FROM users;\n";

class RepeatableE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    db_ = std::make_unique<TestDatabase>();
    dir_.Write("0001_users.up.sql", kUsers);
  }

  // Stops the running coordinators (a redeploy), then starts three on the
  // set in `dir` together: none waits for another to serve.
  void DeployThree(const TempDir& dir) {
    for (auto& c : coordinators_) {
      c->process().Signal(SIGTERM);
      EXPECT_EQ(c->process().Wait(absl::Seconds(15)), 0) << c->process().Log();
    }
    coordinators_.clear();
    for (int i = 0; i < 3; ++i) {
      coordinators_.push_back(std::make_unique<CoordinatorProcess>(
          db_->url(), dir.path(),
          std::vector<std::string>{"--id", absl::StrCat("c", i), "--resync-interval", "1s"},
          "127.0.0.1:0", /*wait_until_serving=*/false));
    }
    for (auto& c : coordinators_) ASSERT_FALSE(c->address().empty());
  }

  // An agent with the app's own files, on coordinator `i`: its exit code.
  int AgentWait(int i, std::string* out, const TempDir* dir = nullptr) {
    return RunBinary(Args("schemagate-agent",
                          {"wait", "--coordinator", coordinators_[i]->address(), "--migrations-dir",
                           (dir ? *dir : dir_).path(), "--timeout", "30s"}),
                     out);
  }

  int RepeatableEvents() {
    return std::stoi(
        db_->Query("SELECT count(*) FROM schemagate.events WHERE kind = 'repeatable'"));
  }

  std::unique_ptr<TestDatabase> db_;
  TempDir dir_;
  std::vector<std::unique_ptr<CoordinatorProcess>> coordinators_;
};

TEST_F(RepeatableE2eTest, ThreeCoordinatorsApplyAViewOnceAndAgainOnlyWhenItsFileChanges) {
  dir_.Write("repeatable/user_names.sql", kView);
  DeployThree(dir_);
  std::string out;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(AgentWait(i, &out), 0) << out;
  EXPECT_EQ(RepeatableEvents(), 1);
  EXPECT_EQ(db_->Query("SELECT count(*) FROM information_schema.columns WHERE table_name = "
                       "'user_names'"),
            "1");
  EXPECT_EQ(
      RunBinary(Args("schemagatectl", {"status", "--coordinator", coordinators_[1]->address()}),
                &out),
      0)
      << out;
  EXPECT_THAT(out, HasSubstr("repeatables:  1 (0 to apply)"));
  EXPECT_THAT(out, HasSubstr("user_names  applied"));

  // Release 2 edits the view's file: an app with it is not ready until the
  // coordinators have it (read directly from the database here).
  TempDir release2;
  release2.Write("0001_users.up.sql", kUsers);
  release2.Write("repeatable/user_names.sql", kEditedView);
  EXPECT_EQ(RunBinary(Args("schemagate-agent", {"wait", "--coordinator", "127.0.0.1:1",
                                                "--migrations-dir", release2.path(), "--timeout",
                                                "2s", "--fallback-database-url", db_->url()}),
                      &out),
            7)
      << out;
  EXPECT_THAT(out, HasSubstr("repeatable user_names is not applied with the app's text yet"));
  // The three are redeployed with it.
  DeployThree(release2);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(AgentWait(i, &out, &release2), 0) << out;
  EXPECT_EQ(RepeatableEvents(), 2);
  EXPECT_EQ(db_->Query("SELECT count(*) FROM information_schema.columns WHERE table_name = "
                       "'user_names'"),
            "2");
  EXPECT_EQ(
      RunBinary(Args("schemagatectl", {"history", "--coordinator", coordinators_[2]->address()}),
                &out),
      0)
      << out;
  EXPECT_THAT(out, HasSubstr("R user_names"));
  EXPECT_THAT(out, HasSubstr("re-applied (changed)"));
  EXPECT_EQ(RunBinary(Args("schemagatectl", {"history", "--coordinator",
                                             coordinators_[0]->address(), "--output", "json"}),
                      &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("\"kind\": \"repeatable\""));

  // Redeployed unchanged: nothing is re-applied (past a resync or two).
  DeployThree(release2);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(AgentWait(i, &out, &release2), 0) << out;
  absl::SleepFor(absl::Seconds(3));
  EXPECT_EQ(RepeatableEvents(), 2);
  EXPECT_EQ(RunBinary(Args("schemagatectl", {"status", "--coordinator", coordinators_[0]->address(),
                                             "--output", "json"}),
                      &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("\"name\": \"user_names\""));
  EXPECT_THAT(out, HasSubstr("REPEATABLE_APPLIED"));
}

TEST_F(RepeatableE2eTest, ABrokenRepeatableFailsTheSetWithItsSqlstateAndTheAgentIsToldSo) {
  dir_.Write("repeatable/broken.sql",
             "-- reads a table no migration makes\nCREATE VIEW broken AS SELECT * FROM "
             "no_such_table;\n");
  DeployThree(dir_);
  std::string out;
  EXPECT_EQ(AgentWait(0, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("FAILED"));
  EXPECT_THAT(out, HasSubstr("repeatable broken failed [42P01] at statement 1 ("));
  EXPECT_THAT(out, HasSubstr("repeatable/broken.sql:2)"));
  // An agent that takes the coordinator's own set is told so too.
  EXPECT_EQ(RunBinary(Args("schemagate-agent", {"wait", "--coordinator",
                                                coordinators_[2]->address(), "--timeout", "30s"}),
                      &out),
            5)
      << out;
  // FAILED (exit 5) once no other coordinator's run holds the lock (while
  // one does, status says RUNNING: running is not failing).
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        return RunBinary(
                   Args("schemagatectl", {"status", "--coordinator", coordinators_[1]->address()}),
                   &out) == 5;
      },
      absl::Seconds(15)))
      << out;
  EXPECT_THAT(out, HasSubstr("failure:      repeatable broken [SQLSTATE 42P01]"));
  EXPECT_THAT(out, HasSubstr("repeatables:  1 (0 to apply)"));
  EXPECT_THAT(out, HasSubstr("line 2"));
  // The versioned migration before it committed; the failure was recorded
  // once, not retried by the other coordinators.
  EXPECT_TRUE(testing::IsApplied(*db_, 1));
  EXPECT_EQ(db_->Query("SELECT count(*) FROM schemagate.events WHERE kind = 'failure'"), "1");
  EXPECT_EQ(db_->Query("SELECT to_regclass('broken') IS NULL"), "t");
  // No coordinator answering: the agent's direct read says the same.
  EXPECT_EQ(RunBinary(Args("schemagate-agent",
                           {"check", "--coordinator", "127.0.0.1:1", "--migrations-dir",
                            dir_.path(), "--fallback-database-url", db_->url()}),
                      &out),
            5)
      << out;
  EXPECT_THAT(out, HasSubstr("repeatable broken failed [42P01]"));
}

TEST_F(RepeatableE2eTest, PlanAndDryRunListTheRepeatablesThatWouldRunAndWhy) {
  dir_.Write("repeatable/user_names.sql", kView);
  CoordinatorProcess coordinator(db_->url(), dir_.path(), {"--apply", "manual"});
  const std::string address = coordinator.address();
  std::string out;
  EXPECT_EQ(RunBinary(Args("schemagatectl", {"status", "--coordinator", address}), &out), 1);
  EXPECT_THAT(out, HasSubstr("1 migration(s) pending, 1 repeatable(s) to apply"));
  EXPECT_EQ(RunBinary(Args("schemagatectl", {"plan", "--coordinator", address}), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("1. up 1 users"));
  EXPECT_THAT(out, HasSubstr("2. repeatable user_names (new)  [transaction"));
  EXPECT_THAT(out, HasSubstr("CREATE OR REPLACE VIEW user_names AS SELECT name FROM users"));
  EXPECT_EQ(
      RunBinary(Args("schemagatectl", {"apply", "--dry-run", "--coordinator", address}), &out), 0)
      << out;
  EXPECT_THAT(out, HasSubstr("dry run: would apply (new): repeatable user_names"));
  EXPECT_THAT(out, HasSubstr("1 migration(s) and 1 repeatable(s) would apply"));
  EXPECT_EQ(db_->Query("SELECT to_regclass('user_names') IS NULL"), "t");
  EXPECT_EQ(RunBinary(Args("schemagatectl", {"apply", "--coordinator", address}), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("applied 1 migration(s) and 1 repeatable(s)"));
  EXPECT_EQ(RepeatableEvents(), 1);
  EXPECT_EQ(RunBinary(Args("schemagatectl", {"plan", "--coordinator", address}), &out), 0) << out;
  EXPECT_THAT(out, ::testing::Not(HasSubstr("repeatable user_names")));
}

}  // namespace
}  // namespace schemagate
