#include "coordinator/engine/readiness.h"

#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::TempDir;
using ::testing::HasSubstr;

// Set: 1, 2, 3 (non-breaking), 4 (breaking), 5 (non-breaking).
class ReadinessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.Write("0001_a.up.sql", "CREATE TABLE a (id int);\n");
    dir_.Write("0002_b.up.sql", "CREATE TABLE b (id int);\n");
    dir_.Write("0003_c.up.sql", "CREATE TABLE c (id int);\n");
    dir_.Write("0004_drop_a.up.sql", "-- schemagate:breaking\nDROP TABLE a;\n");
    dir_.Write("0005_e.up.sql", "CREATE TABLE e (id int);\n");
    std::vector<std::string> warnings;
    absl::StatusOr<MigrationSet> set = MigrationSet::LoadDirectory(dir_.path(), &warnings);
    ASSERT_TRUE(set.ok()) << set.status();
    set_ = std::make_unique<MigrationSet>(std::move(*set));
    view_.set = set_.get();
    view_.database_available = true;
    view_.db.initialized = true;
  }

  // Marks versions 1..n applied with the set's checksums.
  void ApplyUpTo(int64_t n) { view_.db.applied = testing::AppliedUpTo(*set_, n); }

  AppTarget Target(int64_t known, int64_t required) {
    AppTarget t;
    t.known_version = known;
    t.required_version = required;
    return t;
  }

  InstanceRecord Instance(const std::string& id, int64_t known) {
    return testing::LiveInstance(id, known);
  }

  TempDir dir_;
  std::unique_ptr<MigrationSet> set_;
  SchemaView view_;
};

TEST_F(ReadinessTest, UnavailableWhenTheDatabaseCannotBeReached) {
  view_.database_available = false;
  view_.database_error = "connection refused";
  ReadinessAnswer a = EvaluateReadiness(Target(3, 3), view_);
  EXPECT_EQ(a.state, ReadinessState::kUnavailable);
  EXPECT_THAT(a.message, HasSubstr("connection refused"));
}

TEST_F(ReadinessTest, ReadyWhenEverythingRequiredIsApplied) {
  ApplyUpTo(3);
  ReadinessAnswer a = EvaluateReadiness(Target(3, 3), view_);
  EXPECT_EQ(a.state, ReadinessState::kReady);
  EXPECT_EQ(a.applied_version, 3);
  EXPECT_EQ(a.blocking_version, 0);
}

TEST_F(ReadinessTest, AppWithoutTargetUsesTheCoordinatorsSetBreakingAside) {
  ApplyUpTo(3);
  AppTarget resolved = ResolveTarget(AppTarget(), *set_);
  EXPECT_EQ(resolved.known_version, 5);
  EXPECT_EQ(resolved.required_version, 5);
  EXPECT_EQ(EvaluateReadiness(AppTarget(), view_).state, ReadinessState::kPending);
  // R = 5 because 5 is not breaking, so breaking 4 below it is needed too.
  ApplyUpTo(5);
  EXPECT_EQ(EvaluateReadiness(AppTarget(), view_).state, ReadinessState::kReady);
}

TEST_F(ReadinessTest, ResolveTargetFillsOneFromTheOther) {
  EXPECT_EQ(ResolveTarget(Target(4, 0), *set_).required_version, 4);
  EXPECT_EQ(ResolveTarget(Target(0, 2), *set_).known_version, 2);
}

TEST_F(ReadinessTest, PendingWhenARequiredVersionIsNotApplied) {
  ApplyUpTo(1);
  ReadinessAnswer a = EvaluateReadiness(Target(3, 3), view_);
  EXPECT_EQ(a.state, ReadinessState::kPending);
  EXPECT_EQ(a.blocking_version, 2);
  EXPECT_THAT(a.message, HasSubstr("2 migration(s) pending up to 3"));
}

TEST_F(ReadinessTest, PendingUnderManualModeSaysAnOperatorMustApply) {
  ApplyUpTo(1);
  view_.manual = true;
  ReadinessAnswer a = EvaluateReadiness(Target(3, 3), view_);
  EXPECT_EQ(a.state, ReadinessState::kPending);
  EXPECT_THAT(a.message, HasSubstr("schemagatectl apply"));
}

TEST_F(ReadinessTest, MigratingWhileARunIsUnderWay) {
  ApplyUpTo(1);
  view_.run_in_progress = true;
  EXPECT_EQ(EvaluateReadiness(Target(3, 3), view_).state, ReadinessState::kMigrating);
}

TEST_F(ReadinessTest, UnknownVersionWhenTheCoordinatorLacksIt) {
  ApplyUpTo(5);
  ReadinessAnswer a = EvaluateReadiness(Target(9, 9), view_);
  EXPECT_EQ(a.state, ReadinessState::kUnknownVersion);
  EXPECT_EQ(a.blocking_version, 9);
  EXPECT_THAT(a.message, HasSubstr("deploy the coordinator"));
}

TEST_F(ReadinessTest, ReleaseTwoNeedsOnlyTheNonBreakingPart) {
  // An app whose set ends with breaking 4: K=4, R=3.
  ApplyUpTo(3);
  EXPECT_EQ(EvaluateReadiness(Target(4, 3), view_).state, ReadinessState::kReady);
}

TEST_F(ReadinessTest, IncompatibleOnceABreakingMigrationAboveKIsApplied) {
  ApplyUpTo(4);
  ReadinessAnswer a = EvaluateReadiness(Target(3, 3), view_);
  EXPECT_EQ(a.state, ReadinessState::kIncompatible);
  EXPECT_EQ(a.blocking_version, 4);
  EXPECT_TRUE(IsFinal(a.state));
  EXPECT_EQ(EvaluateReadiness(Target(4, 3), view_).state, ReadinessState::kReady);
}

TEST_F(ReadinessTest, MismatchWhenAnAppChecksumDiffersFromTheAppliedOne) {
  ApplyUpTo(3);
  AppTarget t = Target(3, 3);
  t.checksums[2] = std::string(64, 'a');
  t.checksums[1] = set_->Find(1)->checksum;
  ReadinessAnswer a = EvaluateReadiness(t, view_);
  EXPECT_EQ(a.state, ReadinessState::kMismatch);
  EXPECT_EQ(a.blocking_version, 2);
  // Checksums of versions not applied yet are not compared.
  AppTarget later = Target(3, 3);
  later.checksums[5] = std::string(64, 'b');
  EXPECT_EQ(EvaluateReadiness(later, view_).state, ReadinessState::kReady);
}

TEST_F(ReadinessTest, FailedWhenARowTheAppNeedsIsDirtyAndNoRunHoldsTheLock) {
  ApplyUpTo(3);
  view_.db.applied[2].dirty = true;
  ReadinessAnswer a = EvaluateReadiness(Target(3, 3), view_);
  EXPECT_EQ(a.state, ReadinessState::kFailed);
  EXPECT_EQ(a.blocking_version, 3);
  EXPECT_THAT(a.message, HasSubstr("schemagatectl repair"));
  // An app that needs nothing of the cut migration can start.
  EXPECT_EQ(EvaluateReadiness(Target(2, 2), view_).state, ReadinessState::kReady);
}

TEST_F(ReadinessTest, RunningIsNotFailingADirtyRowOfTheRunInProgressIsMigrating) {
  // A no-transaction migration's row is dirty while it runs (issue: every
  // agent waiting through CREATE INDEX CONCURRENTLY was told FAILED).
  ApplyUpTo(3);
  view_.db.applied[2].dirty = true;
  view_.db.applied[2].statements_done = 0;
  view_.run_in_progress = true;
  ReadinessAnswer a = EvaluateReadiness(Target(3, 3), view_);
  EXPECT_EQ(a.state, ReadinessState::kMigrating);
  EXPECT_EQ(a.blocking_version, 3);
  EXPECT_THAT(a.message, HasSubstr("statement 1"));
  EXPECT_FALSE(IsFinal(a.state));
}

// A rollback's no-transaction down leaves its row dirty too: agents are told
// a rollback is running (or was cut), not that the migration is being applied.
TEST_F(ReadinessTest, ADirtyRowOfARollbackSaysRollingBack) {
  ApplyUpTo(3);
  view_.db.applied[2].dirty = true;
  view_.db.applied[2].rolling_back = true;
  view_.run_in_progress = true;
  ReadinessAnswer a = EvaluateReadiness(Target(3, 3), view_);
  EXPECT_EQ(a.state, ReadinessState::kMigrating);
  EXPECT_THAT(a.message, HasSubstr("rolling back no-transaction migration"));
  EXPECT_THAT(a.message, ::testing::Not(HasSubstr("applying")));
  view_.run_in_progress = false;
  a = EvaluateReadiness(Target(3, 3), view_);
  EXPECT_EQ(a.state, ReadinessState::kFailed);
  EXPECT_THAT(a.message, HasSubstr("the rollback of a no-transaction migration stopped"));
}

TEST_F(ReadinessTest, AFixedFileIsPendingUnderAutoAndFailedUnderManual) {
  ApplyUpTo(2);
  SqlFailure f;
  f.version = 3;
  f.name = "c";
  f.checksum = std::string(64, 'e');  // not the file's checksum: the file changed
  f.sqlstate = "42601";
  f.message = "syntax error";
  view_.db.failure = f;
  ReadinessAnswer a = EvaluateReadiness(Target(3, 3), view_);
  EXPECT_EQ(a.state, ReadinessState::kPending);
  EXPECT_THAT(a.message, HasSubstr("retried"));
  view_.run_in_progress = true;
  EXPECT_EQ(EvaluateReadiness(Target(3, 3), view_).state, ReadinessState::kMigrating);
  view_.run_in_progress = false;
  view_.manual = true;
  EXPECT_EQ(EvaluateReadiness(Target(3, 3), view_).state, ReadinessState::kFailed);
  // The same file as failed: FAILED under auto too, until a retry is under way.
  view_.manual = false;
  view_.db.failure->checksum = set_->Find(3)->checksum;
  EXPECT_EQ(EvaluateReadiness(Target(3, 3), view_).state, ReadinessState::kFailed);
  view_.run_in_progress = true;
  EXPECT_EQ(EvaluateReadiness(Target(3, 3), view_).state, ReadinessState::kMigrating);
}

TEST_F(ReadinessTest, FailedRunFailsOnlyTheAppsThatNeedIt) {
  ApplyUpTo(2);
  SqlFailure f;
  f.version = 3;
  f.name = "c";
  f.checksum = set_->Find(3)->checksum;  // the file that failed, unchanged
  f.sqlstate = "42P07";
  f.message = "relation \"c\" already exists";
  f.statement_index = 1;
  f.line = 1;
  view_.db.failure = f;
  ReadinessAnswer a = EvaluateReadiness(Target(3, 3), view_);
  EXPECT_EQ(a.state, ReadinessState::kFailed);
  EXPECT_THAT(a.message, HasSubstr("42P07"));
  EXPECT_THAT(a.message, HasSubstr("already exists"));
  EXPECT_EQ(EvaluateReadiness(Target(2, 2), view_).state, ReadinessState::kReady);
}

TEST_F(ReadinessTest, ConflictingSetFailsAppsThatNeedMore) {
  ApplyUpTo(2);
  view_.db.applied[0].checksum = std::string(64, 'f');
  ReadinessAnswer a = EvaluateReadiness(Target(3, 3), view_);
  EXPECT_EQ(a.state, ReadinessState::kFailed);
  EXPECT_THAT(a.message, HasSubstr("was edited after it was applied"));
}

TEST_F(ReadinessTest, BlockedWhileAnOldInstanceNeedsTheOldShape) {
  ApplyUpTo(3);
  view_.db.live_instances = {Instance("old-1", 3)};
  ReadinessAnswer a = EvaluateReadiness(Target(5, 5), view_);
  EXPECT_EQ(a.state, ReadinessState::kBlocked);
  EXPECT_EQ(a.blocking_version, 4);
  EXPECT_THAT(a.message, HasSubstr("old-1"));
  view_.db.live_instances = {Instance("new-1", 4), Instance("new-2", 5)};
  EXPECT_EQ(EvaluateReadiness(Target(5, 5), view_).state, ReadinessState::kPending);
}

TEST_F(ReadinessTest, FindConflictsReportsEditedAndMissingVersions) {
  ApplyUpTo(2);
  view_.db.applied[0].checksum = std::string(64, 'f');
  AppliedMigration ghost;
  ghost.version = 42;
  ghost.name = "ghost";
  ghost.checksum = std::string(64, '0');
  view_.db.applied.push_back(ghost);
  std::vector<std::string> conflicts = FindConflicts(*set_, view_.db);
  ASSERT_EQ(conflicts.size(), 2u);
  EXPECT_THAT(conflicts[0], HasSubstr("version 1"));
  EXPECT_THAT(conflicts[0], HasSubstr("edited after it was applied"));
  EXPECT_THAT(conflicts[1], HasSubstr("version 42 (ghost) is applied but has no file"));
}

// Issue item 7: an app built with the text of version 2 that failed, while
// a fixed text was applied, has an older file, not an edited one.
TEST_F(ReadinessTest, AnAppFileThatFailedBeforeIsNotAMismatch) {
  ApplyUpTo(3);
  const std::string old_text(64, 'a');
  AppTarget t = Target(3, 3);
  t.checksums[2] = old_text;
  EXPECT_EQ(EvaluateReadiness(t, view_).state, ReadinessState::kMismatch);
  view_.db.failed_texts[2] = {old_text};
  EXPECT_EQ(EvaluateReadiness(t, view_).state, ReadinessState::kReady);
}

// Issue item 9: what the run plan refuses until an operator acts is final
// for the apps that need it, and validate reports it.
TEST_F(ReadinessTest, OutOfOrderAndUnadoptedSchemasFailTheAppsThatNeedThem) {
  ApplyUpTo(3);
  view_.db.applied.erase(view_.db.applied.begin() + 1);
  ReadinessAnswer a = EvaluateReadiness(Target(3, 3), view_);
  EXPECT_EQ(a.state, ReadinessState::kFailed);
  EXPECT_EQ(a.blocking_version, 2);
  EXPECT_THAT(a.message, HasSubstr("--allow-out-of-order"));
  EXPECT_EQ(EvaluateReadiness(Target(1, 1), view_).state, ReadinessState::kReady);
  // Running is not failing: a coordinator that allows it may be applying it.
  view_.run_in_progress = true;
  EXPECT_EQ(EvaluateReadiness(Target(3, 3), view_).state, ReadinessState::kMigrating);
  view_.run_in_progress = false;
  EXPECT_THAT(ValidateState(*set_, view_.db), ::testing::Contains(HasSubstr("out-of-order")));
  view_.permissions.allow_out_of_order = true;
  EXPECT_EQ(EvaluateReadiness(Target(3, 3), view_).state, ReadinessState::kPending);
  EXPECT_THAT(ValidateState(*set_, view_.db, view_.permissions),
              ::testing::Not(::testing::Contains(HasSubstr("out-of-order"))));

  view_.db.applied.clear();
  view_.db.unrecorded_table_count = 1;
  view_.db.unrecorded_tables = {"public.users"};
  a = EvaluateReadiness(Target(1, 1), view_);
  EXPECT_EQ(a.state, ReadinessState::kFailed);
  EXPECT_THAT(a.message, HasSubstr("public.users"));
  EXPECT_THAT(a.message, HasSubstr("baseline"));
  EXPECT_THAT(ValidateState(*set_, view_.db), ::testing::Contains(HasSubstr("baseline")));
}

TEST(ReadinessNamesTest, NamesAndFinalStates) {
  EXPECT_STREQ(ReadinessStateName(ReadinessState::kUnknownVersion), "UNKNOWN_VERSION");
  EXPECT_TRUE(IsFinal(ReadinessState::kMismatch));
  EXPECT_TRUE(IsFinal(ReadinessState::kFailed));
  EXPECT_FALSE(IsFinal(ReadinessState::kBlocked));
  EXPECT_FALSE(IsFinal(ReadinessState::kReady));
}

}  // namespace
}  // namespace schemagate
