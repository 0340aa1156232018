// Lint is decided when schemagated loads its set, never half-way through a
// rollout: a set with a lint error refuses to start (exit 2, every finding
// with file:line) before anything is applied; --lint-from and the
// lint-ignore directive adopt migrations written before schemagate.
#include <map>
#include <string>
#include <vector>

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
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kRename[] = "0012_rename_note.up.sql";
constexpr char kRenameSql[] = "ALTER TABLE t1 RENAME COLUMN note TO remark;\n";

// Twelve migrations, as a set adopted from golang-migrate might hold: the
// twelfth renames a column and nobody marked it breaking.
class LintAtLoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    testing::WriteTrivialMigrations(dir_, 1, 11);
    dir_.Write(kRename, std::string("-- from the old migrate days\n") + kRenameSql);
  }

  // schemagated on an empty database with `args`: must refuse to start.
  std::string ExpectRefusedToStart(const TestDatabase& db, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {BinaryPath("schemagated"), "--database-url", db.url(),
                                     "--migrations-dir", dir_.path(), "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), args.begin(), args.end());
    ChildProcess daemon(argv);
    EXPECT_EQ(daemon.Wait(absl::Seconds(30)), 2) << daemon.Log();
    EXPECT_THAT(daemon.Log(), Not(HasSubstr("serving on")));
    // Nothing was applied, not even the bookkeeping schema.
    EXPECT_EQ(db.Query("SELECT count(*) FROM pg_namespace WHERE nspname = 'schemagate'"), "0");
    return daemon.Log();
  }

  // A coordinator started with `args` applies the whole set to an empty
  // database and an agent with the same files reaches READY.
  void ExpectWholeSetApplied(const std::vector<std::string>& args) {
    TestDatabase db;
    CoordinatorProcess coordinator(db.url(), dir_.path(), args);
    std::string out;
    EXPECT_EQ(RunBinary({BinaryPath("schemagate-agent"), "wait", "--coordinator",
                         coordinator.address(), "--migrations-dir", dir_.path(), "--timeout",
                         "60s"},
                        &out),
              0)
        << out << coordinator.process().Log();
    EXPECT_EQ(db.Query("SELECT count(*) FROM schemagate.migrations WHERE state = 'applied'"),
              "12");
    EXPECT_EQ(db.Query("SELECT count(*) FROM information_schema.columns WHERE table_name = 't1' "
                       "AND column_name = 'remark'"),
              "1");
    // The waived finding is still reported.
    EXPECT_THAT(coordinator.process().Log(),
                HasSubstr(std::string(kRename) + ":2: error (waived: "));
  }

  TempDir dir_;
};

TEST_F(LintAtLoadTest, AnUnmarkedRenameRefusesToStartNamingFileAndLine) {
  dir_.Write("0011_table_11.up.sql", "ALTER TABLE t2 DROP COLUMN note;\n");
  TestDatabase db;
  const std::string log = ExpectRefusedToStart(db, {});
  EXPECT_THAT(log, HasSubstr("refusing to start"));
  // Every error, each with file:line, rule and fix.
  EXPECT_THAT(log, HasSubstr("has 2 lint errors"));
  EXPECT_THAT(log, HasSubstr("0011_table_11.up.sql:1: error: ALTER TABLE t2 DROP COLUMN note"));
  EXPECT_THAT(log, HasSubstr(std::string(kRename) +
                             ":2: error: ALTER TABLE t1 RENAME COLUMN note TO remark"));
  EXPECT_THAT(log, HasSubstr("[rename-column-not-breaking]"));
  EXPECT_THAT(log, HasSubstr("fix: expand/contract"));
  EXPECT_THAT(log, HasSubstr("--lint-from VERSION"));
  // --lint-from below the file does not waive it.
  testing::WriteTrivialMigrations(dir_, 11, 1);
  EXPECT_THAT(ExpectRefusedToStart(db, {"--lint-from", "11"}),
              HasSubstr(std::string(kRename) + ":2: error: "));
}

TEST_F(LintAtLoadTest, LintFromAppliesTheWholeSetAndAgentsReachReady) {
  ExpectWholeSetApplied({"--lint-from", "12"});
}

TEST_F(LintAtLoadTest, TheLintIgnoreDirectiveAppliesTheWholeSetAndAgentsReachReady) {
  dir_.Write(kRename,
             std::string("-- schemagate:lint-ignore=rename-column-not-breaking reason: applied "
                         "in 2019, before schemagate\n") +
                 kRenameSql);
  ExpectWholeSetApplied({});
}

TEST_F(LintAtLoadTest, CtlLintAgreesWithTheDaemon) {
  std::string out;
  const std::vector<std::string> lint = {BinaryPath("schemagatectl"), "lint", "--migrations-dir",
                                         dir_.path()};
  EXPECT_EQ(RunBinary(lint, &out), 1) << out;
  EXPECT_THAT(out, HasSubstr(std::string(kRename) + ":2: error: "));
  EXPECT_THAT(out, HasSubstr("schemagated would refuse to start with this set: 1 error(s)"));
  std::vector<std::string> from = lint;
  from.insert(from.end(), {"--lint-from", "0012"});
  EXPECT_EQ(RunBinary(from, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr(std::string(kRename) +
                             ":2: error (waived: at or below --lint-from 12): "));
  EXPECT_THAT(out, HasSubstr("12 migration(s) checked: 0 error(s), 0 warning(s), 1 waived"));
  // The same from the environment, as schemagated reads it.
  EXPECT_EQ(RunBinary(lint, &out, absl::Seconds(60), {{"SCHEMAGATE_LINT_FROM", "12"}}), 0) << out;
  std::vector<std::string> bad = lint;
  bad.insert(bad.end(), {"--lint-from", "v12"});
  EXPECT_EQ(RunBinary(bad, &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("--lint-from: 'v12' is not a version"));
}

TEST_F(LintAtLoadTest, AMisspeltDirectiveRefusesToStartWithTheRightSpelling) {
  dir_.Write(kRename, std::string("/* schemagate:breaking */\n") + kRenameSql);
  TestDatabase db;
  const std::string log = ExpectRefusedToStart(db, {"--lint", "warn"});
  EXPECT_THAT(log, HasSubstr(std::string(kRename) + ":1: '/* schemagate:breaking */' is not a "
                                                    "directive as written"));
  EXPECT_THAT(log, HasSubstr("write '-- schemagate:breaking'"));
}

}  // namespace
}  // namespace schemagate
