// Repeatable migrations on the in-memory FakeStore, through the public
// Runner, run plan and readiness: applied after the versioned migrations,
// again only when their file changes, a failure recorded and final for the
// apps, an older text (a coordinator not yet redeployed) left alone.
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "coordinator/base/clock.h"
#include "coordinator/engine/fake_store.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/engine/readiness.h"
#include "coordinator/engine/runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace schemagate {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kTable[] = "CREATE TABLE users (id int, name text);\n";
constexpr char kView[] = "CREATE OR REPLACE VIEW user_names AS SELECT name FROM users;\n";
constexpr char kEditedView[] = "CREATE OR REPLACE VIEW user_names AS SELECT id, name FROM users;\n";

class RepeatableRunTest : public ::testing::Test {
 protected:
  RepeatableRunTest() : db_(&clock_), store_(&db_, FakeStoreOptions{"coordinator-a"}) {
    options_.coordinator_id = "coordinator-a";
    options_.sleep = [](absl::Duration) {};
    // A statement naming no_such_table fails as PostgreSQL would.
    db_.SetStatementHook([](const std::string& text) {
      if (absl::StrContains(text, "no_such_table")) {
        return FakeStatementResult::Fail("42P01", "relation \"no_such_table\" does not exist");
      }
      return FakeStatementResult::Ok();
    });
  }

  static MigrationSet Load(const std::string& view, std::map<std::string, std::string> more = {}) {
    more["0001_users.up.sql"] = kTable;
    more["repeatable/user_names.sql"] = view;
    std::vector<std::string> warnings;
    absl::StatusOr<MigrationSet> set = MigrationSet::LoadFiles("m", more, &warnings);
    EXPECT_TRUE(set.ok()) << set.status();
    return set.ok() ? std::move(*set) : MigrationSet();
  }

  absl::StatusOr<RunOutcome> Apply(const MigrationSet& set, bool operator_apply = false) {
    RunRequest request;
    request.respect_hold = !operator_apply;
    request.retry_failed = operator_apply;
    return Runner(&store_, &set, options_).Apply(request, nullptr, nullptr);
  }

  DatabaseState State() { return *store_.ReadState(); }

  std::vector<EventRecord> RepeatableEvents() {
    std::vector<EventRecord> out;
    const absl::StatusOr<std::vector<EventRecord>> events = store_.ReadEventsAfter(0, 1000);
    EXPECT_TRUE(events.ok()) << events.status();
    if (!events.ok()) return out;
    for (const EventRecord& e : *events) {
      if (e.kind == "repeatable") out.push_back(e);
    }
    return out;
  }

  ReadinessAnswer Readiness(const MigrationSet& set, AppTarget target = AppTarget()) {
    SchemaView view;
    view.set = &set;
    view.database_available = true;
    view.db = State();
    return EvaluateReadiness(target, view);
  }

  ManualClock clock_;
  FakeDatabase db_;
  FakeStore store_;
  RunnerOptions options_;
};

TEST_F(RepeatableRunTest, ANewRepeatableRunsAfterTheVersionedOnesAndUnchangedItDoesNotRunAgain) {
  const MigrationSet set = Load(kView);
  EXPECT_EQ(Readiness(set).state, ReadinessState::kPending);
  absl::StatusOr<RunOutcome> outcome = Apply(set);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->applied, 1);
  EXPECT_EQ(outcome->repeatables_applied, 1);
  EXPECT_THAT(db_.executed(),
              ElementsAre("CREATE TABLE users (id int, name text)",
                          "CREATE OR REPLACE VIEW user_names AS SELECT name FROM users"));
  const DatabaseState state = State();
  ASSERT_EQ(state.repeatables.size(), 1u);
  EXPECT_EQ(state.repeatables[0].checksum, set.repeatables()[0].checksum);
  EXPECT_EQ(state.repeatables[0].applied_by, "coordinator-a");
  ASSERT_EQ(RepeatableEvents().size(), 1u);
  EXPECT_THAT(RepeatableEvents()[0].message, HasSubstr("applied (new)"));
  EXPECT_EQ(Readiness(set).state, ReadinessState::kReady);

  // Unchanged: nothing runs, nothing is recorded.
  outcome = Apply(set);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->repeatables_applied, 0);
  EXPECT_EQ(db_.executed().size(), 2u);
  EXPECT_EQ(RepeatableEvents().size(), 1u);
}

TEST_F(RepeatableRunTest, AChangedFileIsReAppliedOnceAndOnlyIt) {
  const MigrationSet first = Load(kView, {{"repeatable/grants.sql", "SELECT 'grants';\n"}});
  ASSERT_TRUE(Apply(first).ok());
  EXPECT_EQ(RepeatableEvents().size(), 2u);
  const MigrationSet edited = Load(kEditedView, {{"repeatable/grants.sql", "SELECT 'grants';\n"}});
  SchemaView view;
  view.set = &edited;
  view.database_available = true;
  view.db = State();
  const RunPlan plan = PlanRun(edited, view.db, AutomaticRequest(), StepDefaults());
  ASSERT_EQ(plan.repeatables.size(), 1u);
  EXPECT_EQ(plan.repeatables[0].name(), "user_names");
  EXPECT_STREQ(plan.repeatables[0].reason(), "changed");
  EXPECT_EQ(Readiness(edited).state, ReadinessState::kPending);
  // An app with the file the database has is still ready; one with the
  // edited file waits for it.
  AppTarget old_app;
  old_app.known_version = old_app.required_version = 1;
  old_app.repeatable_checksums["user_names"] = first.FindRepeatable("user_names")->checksum;
  EXPECT_EQ(Readiness(edited, old_app).state, ReadinessState::kReady);

  absl::StatusOr<RunOutcome> outcome = Apply(edited);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->applied, 0);
  EXPECT_EQ(outcome->repeatables_applied, 1);
  EXPECT_EQ(db_.executed().back(),
            "CREATE OR REPLACE VIEW user_names AS SELECT id, name FROM users");
  ASSERT_EQ(RepeatableEvents().size(), 3u);
  EXPECT_THAT(RepeatableEvents().back().message, HasSubstr("re-applied (changed)"));
  EXPECT_EQ(State().FindRepeatable("user_names")->checksum,
            edited.FindRepeatable("user_names")->checksum);
  EXPECT_EQ(Readiness(edited).state, ReadinessState::kReady);
  ASSERT_TRUE(Apply(edited).ok());
  EXPECT_EQ(RepeatableEvents().size(), 3u);
}

TEST_F(RepeatableRunTest, AFailingRepeatableMakesTheSetFailedUntilItsFileIsFixed) {
  const MigrationSet broken = Load("CREATE VIEW v AS SELECT 1;\nSELECT * FROM no_such_table;\n");
  absl::StatusOr<RunOutcome> outcome = Apply(broken);
  ASSERT_EQ(outcome.status().code(), absl::StatusCode::kFailedPrecondition) << outcome.status();
  EXPECT_THAT(outcome.status().message(), HasSubstr("repeatable user_names failed at statement 2 "
                                                    "(m/repeatable/user_names.sql:2)"));
  EXPECT_THAT(outcome.status().message(), HasSubstr("42P01"));
  DatabaseState state = State();
  EXPECT_EQ(state.AppliedHead(), 1);  // the versioned migration committed before it
  EXPECT_TRUE(state.repeatables.empty());
  ASSERT_TRUE(state.failure.has_value());
  EXPECT_TRUE(state.failure->of_repeatable());
  EXPECT_EQ(state.failure->name, "user_names");
  EXPECT_EQ(state.failure->line, 2);
  const ReadinessAnswer answer = Readiness(broken);
  EXPECT_EQ(answer.state, ReadinessState::kFailed);
  EXPECT_THAT(answer.message, HasSubstr("[42P01]"));
  EXPECT_TRUE(IsFinal(answer.state));
  EXPECT_THAT(ValidateState(broken, state),
              ::testing::Contains(HasSubstr("the last run failed: repeatable user_names failed")));
  // Unchanged, an automatic run refuses it; the plan says why.
  EXPECT_EQ(Apply(broken).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(db_.executed().size(), 2u);

  const MigrationSet fixed = Load(kView);
  EXPECT_EQ(Readiness(fixed).state, ReadinessState::kPending);
  outcome = Apply(fixed);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->repeatables_applied, 1);
  state = State();
  EXPECT_FALSE(state.failure.has_value());
  EXPECT_EQ(Readiness(fixed).state, ReadinessState::kReady);
}

TEST_F(RepeatableRunTest, AnOlderTextIsNotReAppliedByItselfButAnOperatorMayRevertToIt) {
  const MigrationSet v1 = Load(kView);
  const MigrationSet v2 = Load(kEditedView);
  ASSERT_TRUE(Apply(v1).ok());
  ASSERT_TRUE(Apply(v2).ok());
  // A coordinator still on v1 (not redeployed yet) leaves v2 alone.
  absl::StatusOr<RunOutcome> outcome = Apply(v1);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->repeatables_applied, 0);
  EXPECT_EQ(State().FindRepeatable("user_names")->checksum, v2.repeatables()[0].checksum);
  EXPECT_THAT(FindOlderRepeatables(v1, State()),
              ElementsAre(HasSubstr("is a text applied before and since replaced")));
  EXPECT_EQ(Readiness(v1).state, ReadinessState::kUnknownVersion);
  EXPECT_THAT(ValidateState(v1, State()),
              ::testing::Contains(HasSubstr("repeatable user_names (m/repeatable/user_names.sql")));
  // An operator's apply reverts to it.
  outcome = Apply(v1, /*operator_apply=*/true);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->repeatables_applied, 1);
  EXPECT_EQ(State().FindRepeatable("user_names")->checksum, v1.repeatables()[0].checksum);
}

TEST_F(RepeatableRunTest, RepeatablesWaitForEveryVersionedMigrationAndAreNotPlannedBelowTheHead) {
  const MigrationSet set = Load(kView, {{"0002_more.up.sql", "CREATE TABLE more (id int);\n"}});
  PlanRequest to_one = AutomaticRequest();
  to_one.target_version = 1;
  EXPECT_TRUE(PlanRun(set, State(), to_one, StepDefaults()).repeatables.empty());
  const RunPlan all = PlanRun(set, State(), AutomaticRequest(), StepDefaults());
  EXPECT_EQ(all.steps.size(), 2u);
  EXPECT_EQ(all.repeatables.size(), 1u);
  RunRequest request;
  request.target_version = 1;
  absl::StatusOr<RunOutcome> outcome =
      Runner(&store_, &set, options_).Apply(request, nullptr, nullptr);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->repeatables_applied, 0);
  // An app that knows another text of it waits for the coordinator to have it.
  AppTarget newer_app;
  newer_app.repeatable_checksums["user_names"] = std::string(64, 'a');
  newer_app.known_version = newer_app.required_version = 1;
  EXPECT_EQ(Readiness(set, newer_app).state, ReadinessState::kUnknownVersion);
}

}  // namespace
}  // namespace schemagate
