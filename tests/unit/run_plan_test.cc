#include "coordinator/engine/run_plan.h"

#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::TempDir;
using ::testing::HasSubstr;

// Set: 1, 2 (no-transaction), 3, 4 (breaking), 5 (breaking), 6.
class RunPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.Write("0001_a.up.sql", "CREATE TABLE a (id int);\n");
    dir_.Write("0001_a.down.sql", "DROP TABLE a;\n");
    dir_.Write("0002_idx.up.sql",
               "-- schemagate:no-transaction\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n");
    dir_.Write("0003_c.up.sql", "-- schemagate:lock-timeout=9s\nCREATE TABLE c (id int);\n");
    dir_.Write("0003_c.down.sql", "DROP TABLE c;\n");
    dir_.Write("0004_drop_c.up.sql", "-- schemagate:breaking\nDROP TABLE c;\n");
    dir_.Write("0005_drop_a.up.sql", "-- schemagate:breaking\nDROP TABLE a;\n");
    dir_.Write("0006_e.up.sql", "CREATE TABLE e (id int);\n");
    std::vector<std::string> warnings;
    absl::StatusOr<MigrationSet> set = MigrationSet::LoadDirectory(dir_.path(), &warnings);
    ASSERT_TRUE(set.ok()) << set.status();
    set_ = std::make_unique<MigrationSet>(std::move(*set));
  }
  void ApplyUpTo(int64_t n) { db_.applied = testing::AppliedUpTo(*set_, n); }
  std::vector<int64_t> Versions(const RunPlan& plan) {
    std::vector<int64_t> out;
    for (const PlanStep& s : plan.steps) out.push_back(s.migration->version);
    return out;
  }
  static bool NoOlderLive(const Migration& m, const DatabaseState& db) {
    return InstancesBelow(db, m.version).empty();
  }
  InstanceRecord Instance(const std::string& id, int64_t known) {
    return testing::LiveInstance(id, known);
  }

  TempDir dir_;
  std::unique_ptr<MigrationSet> set_;
  DatabaseState db_;
  StepDefaults defaults_;
};

TEST_F(RunPlanTest, StepsInOrderWithTheirLimitsUpToTheFirstHeldBreakingMigration) {
  const RunPlan plan = PlanRun(*set_, db_, PlanRequest(), defaults_);
  EXPECT_EQ(Versions(plan), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_FALSE(plan.steps[1].transactional());
  EXPECT_EQ(plan.steps[2].limits.lock_timeout, absl::Seconds(9));
  EXPECT_EQ(plan.steps[0].limits.lock_timeout, defaults_.lock_timeout);
  EXPECT_EQ(plan.blocker.kind, BlockerKind::kBreakingHeld);
  EXPECT_EQ(plan.blocker.version, 4);
  EXPECT_EQ(plan.pending.size(), 6u);
}

TEST_F(RunPlanTest, ConsecutiveBreakingMigrationsShareOneGateDecision) {
  int asked = 0;
  PlanRequest request;
  request.breaking_gate = [&](const Migration& m, const DatabaseState& db) {
    ++asked;
    return NoOlderLive(m, db);
  };
  const RunPlan plan = PlanRun(*set_, db_, request, defaults_);
  EXPECT_EQ(Versions(plan), (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(asked, 1);
  // An instance that knows 4 but not 5 holds 5 back even when 4 may go.
  db_.live_instances = {Instance("web-1", 4)};
  const RunPlan partial = PlanRun(*set_, db_, request, defaults_);
  EXPECT_EQ(Versions(partial), (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(partial.blocker.kind, BlockerKind::kBreakingHeld);
  EXPECT_EQ(partial.blocker.version, 5);
  ASSERT_EQ(partial.blocker.instances.size(), 1u);
  EXPECT_THAT(partial.blocker.message, HasSubstr("api 1.0 (id web-1"));
}

TEST_F(RunPlanTest, ADirtyRowStopsEveryRunInBothDirections) {
  ApplyUpTo(2);
  db_.applied[1].dirty = true;
  for (auto direction : {PlanRequest::Direction::kUp, PlanRequest::Direction::kDown}) {
    PlanRequest request;
    request.direction = direction;
    const RunPlan plan = PlanRun(*set_, db_, request, defaults_);
    EXPECT_TRUE(plan.stopped());
    EXPECT_EQ(plan.blocker.kind, BlockerKind::kDirty);
    EXPECT_EQ(plan.blocker.version, 2);
    EXPECT_THAT(plan.blocker.message, HasSubstr("repair --resume 2"));
  }
}

TEST_F(RunPlanTest, AConflictStopsTheRun) {
  ApplyUpTo(1);
  db_.applied[0].checksum = std::string(64, '0');
  const RunPlan plan = PlanRun(*set_, db_, PlanRequest(), defaults_);
  EXPECT_EQ(plan.blocker.kind, BlockerKind::kConflict);
  EXPECT_TRUE(plan.steps.empty());
}

TEST_F(RunPlanTest, AnUnchangedFailedFileBlocksAutomaticRunsAndAChangedOneIsRetried) {
  ApplyUpTo(2);
  SqlFailure f;
  f.version = 3;
  f.name = "c";
  f.checksum = set_->Find(3)->checksum;
  f.sqlstate = "42P07";
  db_.failure = f;
  const RunPlan automatic = PlanRun(*set_, db_, AutomaticRequest(), defaults_);
  EXPECT_EQ(automatic.blocker.kind, BlockerKind::kFailed);
  EXPECT_THAT(automatic.blocker.message, HasSubstr("42P07"));
  PlanRequest operator_apply;
  operator_apply.retry_failed = true;
  const RunPlan retried = PlanRun(*set_, db_, operator_apply, defaults_);
  EXPECT_EQ(Versions(retried), (std::vector<int64_t>{3}));
  EXPECT_TRUE(retried.clears_failure);
  db_.failure->checksum = std::string(64, 'f');  // the file changed since it failed
  const RunPlan fixed = PlanRun(*set_, db_, AutomaticRequest(), defaults_);
  EXPECT_EQ(Versions(fixed), (std::vector<int64_t>{3}));
  EXPECT_TRUE(fixed.clears_failure);
}

TEST_F(RunPlanTest, AHoldStopsAutomaticRunsAndAnOperatorLiftsIt) {
  ApplyUpTo(1);
  db_.hold_above = 1;
  const RunPlan automatic = PlanRun(*set_, db_, AutomaticRequest(), defaults_);
  EXPECT_EQ(automatic.blocker.kind, BlockerKind::kHold);
  EXPECT_TRUE(automatic.steps.empty());
  const RunPlan lifted = PlanRun(*set_, db_, PlanRequest(), defaults_);
  EXPECT_TRUE(lifted.lifts_hold);
  EXPECT_EQ(Versions(lifted), (std::vector<int64_t>{2, 3}));
}

TEST_F(RunPlanTest, AnUnknownTargetIsRefused) {
  PlanRequest request;
  request.target_version = 20261202044442;
  const RunPlan plan = PlanRun(*set_, db_, request, defaults_);
  EXPECT_EQ(plan.blocker.kind, BlockerKind::kUnknownVersion);
  EXPECT_THAT(plan.blocker.message, HasSubstr("20261202044442"));
}

TEST_F(RunPlanTest, RollbackRunsDownsNewestFirstAndRefusesAMissingDownBeforeAnything) {
  ApplyUpTo(3);
  PlanRequest request;
  request.direction = PlanRequest::Direction::kDown;
  request.target_version = 2;
  const RunPlan plan = PlanRun(*set_, db_, request, defaults_);
  EXPECT_EQ(Versions(plan), (std::vector<int64_t>{3}));
  EXPECT_FALSE(plan.steps[0].up);
  request.target_version = 0;  // 2 has no down
  const RunPlan refused = PlanRun(*set_, db_, request, defaults_);
  EXPECT_EQ(refused.blocker.kind, BlockerKind::kNoDown);
  EXPECT_EQ(refused.blocker.version, 2);
  EXPECT_TRUE(refused.steps.empty());
  // An edited file's down may not match what ran.
  db_.applied[2].checksum = std::string(64, '1');
  request.target_version = 2;
  EXPECT_EQ(PlanRun(*set_, db_, request, defaults_).blocker.kind, BlockerKind::kNoDown);
}

// Issue item 7, a rolling redeploy after a fix: a coordinator whose file of
// version 3 is the text that failed, while another coordinator applied the
// fixed text, holds an older file, not an edited one.
TEST_F(RunPlanTest, AnOlderFileThatFailedIsNotAConflict) {
  ApplyUpTo(3);
  const std::string old_text = set_->Find(3)->checksum;
  db_.applied[2].checksum = std::string(64, 'b');  // the fixed file, applied elsewhere
  db_.applied[2].applied_by = "coordinator-new";
  // Without the record that this coordinator's text failed: an edit.
  EXPECT_EQ(PlanRun(*set_, db_, AutomaticRequest(), defaults_).blocker.kind,
            BlockerKind::kConflict);
  db_.failed_texts[3] = {old_text};
  EXPECT_TRUE(FindConflicts(*set_, db_).empty());
  const std::vector<std::string> older = FindOlderFiles(*set_, db_);
  ASSERT_EQ(older.size(), 1u);
  EXPECT_THAT(older[0], HasSubstr("version 3"));
  EXPECT_THAT(older[0], HasSubstr("older text that failed"));
  EXPECT_THAT(older[0], HasSubstr("coordinator-new"));
  EXPECT_THAT(older[0], HasSubstr("redeploy"));
  const RunPlan plan = PlanRun(*set_, db_, AutomaticRequest(), defaults_);
  EXPECT_NE(plan.blocker.kind, BlockerKind::kConflict);
  // Its down may not be the applied text's: a rollback through it is refused.
  PlanRequest down;
  down.direction = PlanRequest::Direction::kDown;
  down.target_version = 2;
  const RunPlan rollback = PlanRun(*set_, db_, down, defaults_);
  EXPECT_EQ(rollback.blocker.kind, BlockerKind::kNoDown);
  EXPECT_THAT(rollback.blocker.message, HasSubstr("older text"));
}

// Issue item 7, before the fix is applied: the last failure is of another
// coordinator's text, and this coordinator's text failed before. Retrying it
// would fail again and the two coordinators would take turns.
TEST_F(RunPlanTest, AnOlderFileThatFailedIsNotRetriedWhenAnotherTextFailedLast) {
  ApplyUpTo(2);
  const std::string old_text = set_->Find(3)->checksum;
  const std::string other_text(64, 'c');
  SqlFailure f;
  f.version = 3;
  f.name = "c";
  f.checksum = other_text;
  f.sqlstate = "42P01";
  f.coordinator_id = "coordinator-new";
  db_.failure = f;
  // A text that never failed is a fix: retried.
  db_.failed_texts[3] = {other_text};
  EXPECT_EQ(Versions(PlanRun(*set_, db_, AutomaticRequest(), defaults_)),
            (std::vector<int64_t>{3}));
  // This coordinator's own text failed before: not retried.
  db_.failed_texts[3] = {old_text, other_text};
  const RunPlan automatic = PlanRun(*set_, db_, AutomaticRequest(), defaults_);
  EXPECT_EQ(automatic.blocker.kind, BlockerKind::kFailed);
  EXPECT_TRUE(automatic.steps.empty());
  EXPECT_THAT(automatic.blocker.message, HasSubstr("older text that failed before"));
  EXPECT_THAT(automatic.blocker.message, HasSubstr("coordinator-new"));
  // An operator's apply still retries it, as for any failure.
  PlanRequest operator_apply;
  operator_apply.retry_failed = true;
  EXPECT_EQ(Versions(PlanRun(*set_, db_, operator_apply, defaults_)), (std::vector<int64_t>{3}));
}

// Issue item 9a: a pending version below the applied head is refused, for
// automatic runs and operators alike, unless the coordinator allows it.
TEST_F(RunPlanTest, AnOutOfOrderVersionIsRefusedUnlessAllowed) {
  ApplyUpTo(3);
  db_.applied.erase(db_.applied.begin() + 1);  // 2 was added after 3 ran
  for (PlanRequest request : {AutomaticRequest(), PlanRequest()}) {
    request.retry_failed = true;
    const RunPlan plan = PlanRun(*set_, db_, request, defaults_);
    EXPECT_EQ(plan.blocker.kind, BlockerKind::kOutOfOrder);
    EXPECT_TRUE(plan.stopped());
    EXPECT_EQ(plan.blocker.versions, (std::vector<int64_t>{2}));
    EXPECT_EQ(plan.blocker.version, 2);
    EXPECT_THAT(plan.blocker.message, HasSubstr("out-of-order migration(s) 2"));
    EXPECT_THAT(plan.blocker.message, HasSubstr("applied head 3"));
    EXPECT_THAT(plan.blocker.message, HasSubstr("--allow-out-of-order"));
  }
  // A target below it plans nothing out of order.
  PlanRequest below;
  below.target_version = 1;
  EXPECT_EQ(PlanRun(*set_, db_, below, defaults_).blocker.kind, BlockerKind::kNone);
  PlanRequest allowed;
  allowed.permissions.allow_out_of_order = true;
  EXPECT_EQ(Versions(PlanRun(*set_, db_, allowed, defaults_)), (std::vector<int64_t>{2}));
}

// Issue item 9c: tables but no recorded migration: another tool's schema,
// which the first migration would collide with.
TEST_F(RunPlanTest, TablesWithoutARecordedMigrationAreRefusedUntilBaseline) {
  db_.unrecorded_table_count = 7;
  db_.unrecorded_tables = {"public.a", "public.b", "public.c", "public.d", "public.e"};
  for (const PlanRequest& request : {AutomaticRequest(), PlanRequest()}) {
    const RunPlan plan = PlanRun(*set_, db_, request, defaults_);
    EXPECT_EQ(plan.blocker.kind, BlockerKind::kUnmanagedSchema);
    EXPECT_TRUE(plan.stopped());
    EXPECT_EQ(plan.blocker.version, 1);
    EXPECT_THAT(plan.blocker.message, HasSubstr("7 table(s) (public.a, public.b"));
    EXPECT_THAT(plan.blocker.message, HasSubstr("public.e, …)"));
    EXPECT_THAT(plan.blocker.message, HasSubstr("schemagatectl baseline --version V"));
  }
  PlanRequest allowed;
  allowed.permissions.allow_non_empty = true;
  EXPECT_EQ(Versions(PlanRun(*set_, db_, allowed, defaults_)), (std::vector<int64_t>{1, 2, 3}));
  // Once a migration is recorded (baseline), the tables are schemagate's.
  ApplyUpTo(1);
  EXPECT_EQ(Versions(PlanRun(*set_, db_, PlanRequest(), defaults_)), (std::vector<int64_t>{2, 3}));
}

// Issue item 9b: a rollback below what live instances need names them and
// is refused unless forced.
TEST_F(RunPlanTest, ARollbackThatStrandsLiveInstancesIsRefusedUnlessForced) {
  ApplyUpTo(3);
  InstanceRecord needs3 = Instance("web-1", 3);
  needs3.required_version = 3;
  needs3.app_version = "2.0";
  InstanceRecord needs2 = Instance("web-2", 3);
  needs2.required_version = 2;
  db_.live_instances = {needs3, needs2};
  PlanRequest request;
  request.direction = PlanRequest::Direction::kDown;
  request.target_version = 2;
  const RunPlan refused = PlanRun(*set_, db_, request, defaults_);
  EXPECT_EQ(refused.blocker.kind, BlockerKind::kStrandsInstances);
  EXPECT_TRUE(refused.steps.empty());
  ASSERT_EQ(refused.blocker.instances.size(), 1u);
  EXPECT_EQ(refused.blocker.instances[0].instance_id, "web-1");
  EXPECT_THAT(refused.blocker.message, HasSubstr("strands 1 live instance(s)"));
  EXPECT_THAT(refused.blocker.message, HasSubstr("api 2.0 (id web-1, needs 3)"));
  EXPECT_THAT(refused.blocker.message, HasSubstr("--force"));
  request.force = true;
  EXPECT_EQ(Versions(PlanRun(*set_, db_, request, defaults_)), (std::vector<int64_t>{3}));
  // Nothing to roll back strands nobody.
  request.force = false;
  request.target_version = 3;
  EXPECT_EQ(PlanRun(*set_, db_, request, defaults_).blocker.kind, BlockerKind::kNone);
}

}  // namespace
}  // namespace schemagate
