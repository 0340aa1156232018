// The parsers of other tools' bookkeeping rows and the adoption plan
// (engine/foreign_bookkeeping.h, engine/adopt.h): pure, no database.
#include "coordinator/engine/adopt.h"

#include <map>
#include <string>

#include "gtest/gtest.h"

namespace schemagate {
namespace {

MigrationSet Set(const std::map<std::string, std::string>& files) {
  absl::StatusOr<MigrationSet> set = MigrationSet::LoadFiles("m", files, nullptr);
  EXPECT_TRUE(set.ok()) << set.status();
  return set.ok() ? *std::move(set) : MigrationSet();
}

MigrationSet FiveGolangMigrate() {
  std::map<std::string, std::string> files;
  for (int v = 1; v <= 5; ++v) {
    files["000" + std::to_string(v) + "_t.up.sql"] = "CREATE TABLE t" + std::to_string(v) + " ();";
  }
  return Set(files);
}

TEST(ForeignRowsTest, GolangMigrateCurrentVersionAndDirtyCarryOver) {
  ForeignBookkeeping f = ParseGolangMigrateRows({{3, true}});
  ASSERT_TRUE(f.up_to.has_value());
  EXPECT_EQ(f.up_to->version, "3");
  EXPECT_TRUE(f.up_to->dirty);
  MigrationSet set = FiveGolangMigrate();
  AdoptPlan plan = PlanAdoption(set, f, {});
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan.steps.size(), 3u);
  EXPECT_FALSE(plan.steps[0].dirty);
  EXPECT_FALSE(plan.steps[1].dirty);
  EXPECT_TRUE(plan.steps[2].dirty);
  EXPECT_EQ(plan.pending, (std::vector<int64_t>{4, 5}));
  EXPECT_EQ(plan.dirty_count(), 1);
}

TEST(ForeignRowsTest, GolangMigrateNilVersionAndSeveralRows) {
  EXPECT_FALSE(ParseGolangMigrateRows({{-1, false}}).up_to.has_value());
  EXPECT_FALSE(ParseGolangMigrateRows({}).up_to.has_value());
  ForeignBookkeeping two = ParseGolangMigrateRows({{1, false}, {2, false}});
  ASSERT_EQ(two.problems.size(), 1u);
  EXPECT_FALSE(PlanAdoption(FiveGolangMigrate(), two, {}).ok());
}

TEST(ForeignRowsTest, GooseLatestRowPerVersionDecidesAndVersionZeroIsGoosesOwn) {
  ForeignBookkeeping f = ParseGooseRows(
      {{1, 0, true}, {2, 1, true}, {3, 2, true}, {4, 3, true}, {5, 3, false}, {6, 2, true}});
  ASSERT_EQ(f.applied.size(), 2u);
  EXPECT_EQ(f.applied[0].version, "1");
  EXPECT_EQ(f.applied[1].version, "2");
  ASSERT_EQ(f.notes.size(), 1u);
  EXPECT_NE(f.notes[0].find("version 3 was rolled back"), std::string::npos);
}

TEST(ForeignRowsTest, DbmateEveryRowIsAnAppliedVersion) {
  ForeignBookkeeping f = ParseDbmateRows({"0001", "0002", "0004"});
  ASSERT_EQ(f.applied.size(), 3u);
  AdoptPlan plan = PlanAdoption(FiveGolangMigrate(), f, {});
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan.steps.size(), 3u);
  EXPECT_EQ(plan.pending, (std::vector<int64_t>{3, 5}));
}

TEST(ForeignRowsTest, FlywayFailedUndoneDeletedRepeatableAndBaselineRows) {
  std::vector<FlywayRow> rows = {
      {0, std::nullopt, "<< Flyway Schema Creation >>", "SCHEMA", "\"public\"", true},
      {1, "1", "<< Flyway Baseline >>", "BASELINE", "<< Flyway Baseline >>", true},
      {2, "2", "add users", "SQL", "V2__add_users.sql", true},
      {3, "3", "add index", "SQL", "V3__add_index.sql", false},
      {4, "4", "add orders", "SQL", "V4__add_orders.sql", true},
      {5, "4", "add orders", "UNDO_SQL", "U4__add_orders.sql", true},
      {6, std::nullopt, "views", "SQL", "R__views.sql", true},
      {7, "5", "x", "SQL", "V5__x.sql", true},
      {8, "5", "x", "DELETE", "V5__x.sql", true},
  };
  ForeignBookkeeping f = ParseFlywayRows(rows);
  ASSERT_TRUE(f.up_to.has_value());
  EXPECT_TRUE(f.up_to_is_baseline);
  EXPECT_EQ(f.up_to->version, "1");
  ASSERT_EQ(f.applied.size(), 2u);
  EXPECT_EQ(f.applied[0].version, "2");
  EXPECT_FALSE(f.applied[0].dirty);
  EXPECT_EQ(f.applied[1].version, "3");
  EXPECT_TRUE(f.applied[1].dirty);
  EXPECT_EQ(f.notes.size(), 3u);  // undone 4, repeatable, deleted 5

  MigrationSet set = Set({{"V1__a.sql", "CREATE TABLE a ();"},
                          {"V2__add_users.sql", "CREATE TABLE u ();"},
                          {"V3__add_index.sql", "CREATE TABLE i ();"},
                          {"V4__add_orders.sql", "CREATE TABLE o ();"}});
  AdoptPlan plan = PlanAdoption(set, f, {});
  ASSERT_TRUE(plan.ok()) << plan.problems.front();
  ASSERT_EQ(plan.steps.size(), 3u);
  EXPECT_TRUE(plan.steps[2].dirty);
  EXPECT_EQ(plan.pending, (std::vector<int64_t>{4}));
}

TEST(ForeignRowsTest, FlywayDottedVersionsMapAsTheSetStoresThem) {
  MigrationSet set =
      Set({{"V1__a.sql", "CREATE TABLE a ();"}, {"V1.1__b.sql", "CREATE TABLE b ();"}});
  std::vector<FlywayRow> rows = {{1, "1", "a", "SQL", "V1__a.sql", true},
                                 {2, "1.1", "b", "SQL", "V1.1__b.sql", true}};
  AdoptPlan plan = PlanAdoption(set, ParseFlywayRows(rows), {});
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan.steps.size(), 2u);
  EXPECT_EQ(plan.steps[0].migration->version, 1000000000000000);
  EXPECT_EQ(plan.steps[1].migration->version, 1001000000000000);
}

TEST(ForeignRowsTest, AlembicMapsTheRevisionOntoTheFileNamingItAndRefusesBranches) {
  ForeignBookkeeping f = ParseAlembicRows({"bbb"});
  MigrationSet set = FiveGolangMigrate();
  AdoptOptions options;
  const std::map<int64_t, std::string> revisions = {{1, "aaa"}, {2, "bbb"}, {3, "ccc"}};
  options.alembic_revision = [&](const Migration& m) {
    auto it = revisions.find(m.version);
    return it == revisions.end() ? std::string() : it->second;
  };
  AdoptPlan plan = PlanAdoption(set, f, options);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan.steps.size(), 2u);
  EXPECT_FALSE(ParseAlembicRows({"x", "y"}).problems.empty());
  EXPECT_EQ(AlembicRevisionInHeader("-- generated\n-- alembic revision: 1975ea83b712\nCREATE"),
            "1975ea83b712");
  EXPECT_EQ(AlembicRevisionInHeader("CREATE TABLE t ();\n-- alembic revision: x\n"), "");
}

TEST(ForeignRowsTest, VersionsWithoutAFileAreRefusedUnlessSkipped) {
  ForeignBookkeeping f = ParseDbmateRows({"0001", "0009"});
  f.table = "public.schema_migrations";
  AdoptPlan refused = PlanAdoption(FiveGolangMigrate(), f, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.problems[0].find("0009"), std::string::npos);
  EXPECT_NE(refused.problems[0].find("--skip-missing"), std::string::npos);
  AdoptOptions skip;
  skip.skip_missing = true;
  AdoptPlan plan = PlanAdoption(FiveGolangMigrate(), f, skip);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan.steps.size(), 1u);
  EXPECT_EQ(plan.missing, (std::vector<std::string>{"0009"}));
}

TEST(ForeignRowsTest, ChooseForeignNeedsFromWhenSeveralAreFound) {
  ForeignBookkeeping goose = ParseGooseRows({});
  goose.table = "public.goose_db_version";
  ForeignBookkeeping alembic = ParseAlembicRows({});
  alembic.table = "public.alembic_version";
  EXPECT_EQ(ChooseForeign({goose, alembic}, std::nullopt).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChooseForeign({goose, alembic}, ForeignTool::kAlembic)->table,
            "public.alembic_version");
  EXPECT_EQ(ChooseForeign({goose}, ForeignTool::kFlyway).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ChooseForeign({}, std::nullopt).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace schemagate
