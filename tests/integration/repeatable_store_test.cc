// Repeatable migrations on a real PostgreSQL through PgStore and the
// runner: applied with their row in one transaction, re-applied when
// edited, a failing one rolled back (the view as it was) and recorded with
// its SQLSTATE and line; a bookkeeping schema laid out before repeatables
// existed (layout 5, as main made it) is upgraded in place.
#include <memory>
#include <string>
#include <vector>

#include "coordinator/engine/migration_set.h"
#include "coordinator/engine/runner.h"
#include "coordinator/postgres/pg_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;
using ::testing::HasSubstr;

class RepeatableStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    db_ = std::make_unique<TestDatabase>();
    PgStoreOptions options;
    options.conninfo = db_->url();
    options.coordinator_id = "pg-test";
    store_ = std::make_unique<PgStore>(options);
    dir_.Write("0001_users.up.sql", "CREATE TABLE users (id bigint PRIMARY KEY, name text);\n");
  }

  absl::StatusOr<RunOutcome> Apply() {
    std::vector<std::string> warnings;
    absl::StatusOr<MigrationSet> loaded = MigrationSet::LoadDirectory(dir_.path(), &warnings);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    if (!loaded.ok()) return loaded.status();
    set_ = std::make_unique<MigrationSet>(*std::move(loaded));
    RunnerOptions options;
    options.coordinator_id = "pg-test";
    RunRequest request;
    request.respect_hold = true;
    return Runner(store_.get(), set_.get(), options).Apply(request, nullptr, nullptr);
  }

  std::string ViewColumns() {
    return db_->Query(
        "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM "
        "information_schema.columns WHERE table_name = 'user_names'");
  }

  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<PgStore> store_;
  std::unique_ptr<MigrationSet> set_;
  TempDir dir_;
};

TEST_F(RepeatableStoreTest, AppliedReAppliedAndAFailingEditRolledBackWithItsRow) {
  dir_.Write("repeatable/user_names.sql",
             "CREATE OR REPLACE VIEW user_names AS SELECT name FROM users;\n");
  absl::StatusOr<RunOutcome> outcome = Apply();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->repeatables_applied, 1);
  EXPECT_EQ(ViewColumns(), "name");
  const std::string first = set_->repeatables()[0].checksum;
  EXPECT_EQ(db_->Query("SELECT checksum FROM schemagate.repeatables WHERE name = 'user_names'"),
            first);
  EXPECT_EQ(db_->Query("SELECT meta_version FROM schemagate.meta"), "6");

  dir_.Write("repeatable/user_names.sql",
             "DROP VIEW user_names;\nCREATE VIEW user_names AS SELECT id, name FROM users;\n");
  outcome = Apply();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->repeatables_applied, 1);
  EXPECT_EQ(ViewColumns(), "id,name");
  const std::string second = set_->repeatables()[0].checksum;

  // The drop commits only with the rest: a failing edit leaves the view.
  dir_.Write("repeatable/user_names.sql",
             "DROP VIEW user_names;\n\nCREATE VIEW user_names AS SELECT nickname FROM users;\n");
  outcome = Apply();
  ASSERT_EQ(outcome.status().code(), absl::StatusCode::kFailedPrecondition) << outcome.status();
  EXPECT_THAT(outcome.status().message(), HasSubstr("repeatable/user_names.sql:3"));
  EXPECT_THAT(outcome.status().message(), HasSubstr("42703"));
  EXPECT_EQ(ViewColumns(), "id,name");
  EXPECT_EQ(db_->Query("SELECT checksum FROM schemagate.repeatables WHERE name = 'user_names'"),
            second);
  absl::StatusOr<DatabaseState> state = store_->ReadState();
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_TRUE(state->failure.has_value());
  EXPECT_TRUE(state->failure->of_repeatable());
  EXPECT_EQ(state->failure->sqlstate, "42703");
  EXPECT_EQ(state->failure->line, 3);
  EXPECT_THAT(state->repeatable_texts.at("user_names"),
              ::testing::UnorderedElementsAre(first, second));
  EXPECT_EQ(db_->Query("SELECT count(*) FROM schemagate.events WHERE kind = 'repeatable'"), "2");
}

TEST_F(RepeatableStoreTest, ABookkeepingLayoutFromBeforeRepeatablesIsUpgradedInPlace) {
  ASSERT_TRUE(Apply().ok());
  // As a coordinator built before layout 6 left it.
  db_->Exec(
      "DROP TABLE schemagate.repeatables; DROP INDEX schemagate.events_repeatables; "
      "UPDATE schemagate.meta SET meta_version = 5");
  absl::StatusOr<DatabaseState> before = store_->ReadState();
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_TRUE(before->repeatables.empty());
  EXPECT_EQ(before->AppliedHead(), 1);

  dir_.Write("repeatable/user_names.sql",
             "CREATE OR REPLACE VIEW user_names AS SELECT name FROM users;\n");
  absl::StatusOr<RunOutcome> outcome = Apply();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->applied, 0);
  EXPECT_EQ(outcome->repeatables_applied, 1);
  EXPECT_EQ(db_->Query("SELECT meta_version FROM schemagate.meta"), "6");
  EXPECT_EQ(db_->Query("SELECT count(*) FROM schemagate.repeatables"), "1");
  EXPECT_EQ(db_->Query("SELECT count(*) FROM schemagate.events WHERE kind = 'apply'"), "1");
  EXPECT_EQ(ViewColumns(), "name");
}

}  // namespace
}  // namespace schemagate
