// Adopting a database another tool migrated, as a new user does it: the set
// in goose's, dbmate's or Flyway's own format, the database migrated by that
// tool (dbmate: the real dbmate from npm; goose and Flyway: their documented
// bookkeeping, format_sets.h), then
//   schemagated without --adopt: runs nothing, status says what it found;
//   schemagatectl adopt --dry-run, then adopt: nothing re-runs;
//   schemagated on the same files: CURRENT, an agent is READY;
//   a new migration in the same format: applied, agents READY.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/format_sets.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::AgentWait;
using ::schemagate::testing::BinaryPath;
using ::schemagate::testing::CoordinatorProcess;
using ::schemagate::testing::FormatStep;
using ::schemagate::testing::MigrateAsTheTool;
using ::schemagate::testing::RunBinary;
using ::schemagate::testing::SchemaDump;
using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;
using ::schemagate::testing::ToolTable;
using ::schemagate::testing::WriteFormatStep;
using ::schemagate::testing::WriteSet;
using ::testing::HasSubstr;
using ::testing::Not;

int Ctl(const std::vector<std::string>& args, std::string* out) {
  std::vector<std::string> argv = {BinaryPath("schemagatectl")};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunBinary(argv, out);
}

// The set in the tool's format in dir_, and db_ migrated by the tool.
class AdoptTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    std::string dbmate;
    if (GetParam() == "dbmate") {
      SG_REQUIRE_DBMATE(found);
      dbmate = found;
    }
    versions_ = WriteSet(dir_, GetParam());
    db_ = std::make_unique<TestDatabase>();
    ASSERT_TRUE(MigrateAsTheTool(*db_, dir_, GetParam(), dbmate));
  }

  TempDir dir_;
  std::unique_ptr<TestDatabase> db_;
  std::vector<std::string> versions_;
};

TEST_P(AdoptTest, ADatabaseTheToolMigratedIsAdoptedNothingReRunsAndTheNextMigrationApplies) {
  const std::string format = GetParam();
  const TempDir& dir = dir_;
  const TestDatabase& db = *db_;
  const std::vector<std::string>& versions = versions_;
  const std::string tool_schema = SchemaDump(db.url(), {});
  ASSERT_EQ(db.Query("SELECT count(*) FROM users"), "2");
  std::string out;

  // Without --adopt the coordinator runs nothing, writes nothing, and
  // status (exit 5, REFUSED) says what it found and what adopt would do.
  const std::string no_bookkeeping =
      "SELECT count(*) FROM pg_namespace WHERE nspname = 'schemagate'";
  {
    CoordinatorProcess coordinator(db.url(), dir.path(), {"--format", format});
    EXPECT_EQ(Ctl({"status", "--coordinator", coordinator.address()}, &out), 5) << out;
    EXPECT_THAT(out, HasSubstr("REFUSED"));
    EXPECT_THAT(out, HasSubstr(absl::StrCat("found ", ToolTable(format))));
    EXPECT_THAT(out, HasSubstr("'schemagatectl adopt' (or schemagated --adopt) would record 12"));
    EXPECT_EQ(db.Query("SELECT count(*) FROM users"), "2");
    EXPECT_EQ(db.Query(no_bookkeeping), "0");
  }

  const std::vector<std::string> adopt = {
      "adopt", "--database-url", db.url(), "--migrations-dir", dir.path(), "--format", format};
  std::vector<std::string> dry_run = adopt;
  dry_run.push_back("--dry-run");
  EXPECT_EQ(Ctl(dry_run, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("would adopt 12 version(s) from " + ToolTable(format)));
  EXPECT_EQ(db.Query(no_bookkeeping), "0");
  EXPECT_EQ(Ctl(adopt, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("adopted"));
  EXPECT_EQ(db.Query("SELECT count(*) FROM schemagate.migrations WHERE state = 'applied'"), "12");
  // Once is enough: a second adopt is refused, nothing changes.
  EXPECT_EQ(Ctl(adopt, &out), 5) << out;

  {
    CoordinatorProcess coordinator(db.url(), dir.path(), {"--format", format});
    EXPECT_EQ(AgentWait(coordinator.address(), dir.path(), format, &out), 0)
        << out << coordinator.process().Log();
    EXPECT_EQ(Ctl({"status", "--coordinator", coordinator.address()}, &out), 0) << out;
    EXPECT_THAT(out, HasSubstr("CURRENT"));
    EXPECT_EQ(Ctl({"history", "--coordinator", coordinator.address()}, &out), 0) << out;
    EXPECT_THAT(out, HasSubstr("adopt"));
    EXPECT_THAT(out, Not(HasSubstr("applied " + versions.front())));
  }
  // Nothing re-ran: the seed rows are there once, the schema is the tool's.
  EXPECT_EQ(db.Query("SELECT count(*) FROM users"), "2");
  EXPECT_EQ(SchemaDump(db.url(), {"--exclude-schema=schemagate"}), tool_schema);

  // The team's next migration, in the same format, on a redeploy.
  const std::string next =
      WriteFormatStep(dir, format, 13,
                      FormatStep{"notes", "CREATE TABLE notes (id bigint PRIMARY KEY, body text);",
                                 "DROP TABLE notes;"});
  {
    CoordinatorProcess coordinator(db.url(), dir.path(), {"--format", format});
    EXPECT_EQ(AgentWait(coordinator.address(), dir.path(), format, &out), 0)
        << out << coordinator.process().Log();
    EXPECT_EQ(Ctl({"status", "--coordinator", coordinator.address()}, &out), 0) << out;
    EXPECT_THAT(out, HasSubstr("CURRENT"));
  }
  EXPECT_EQ(db.Query("SELECT count(*) FROM pg_tables WHERE tablename = 'notes'"), "1");
  EXPECT_EQ(db.Query(absl::StrCat("SELECT count(*) FROM schemagate.migrations WHERE version = ",
                                  next, " AND state = 'applied'")),
            "1");
  EXPECT_EQ(db.Query("SELECT count(*) FROM users"), "2");
}

// schemagated --adopt does the same at start, under the lock, before its first run.
TEST_P(AdoptTest, SchemagatedWithAdoptAdoptsAtStart) {
  const std::string format = GetParam();
  const TestDatabase& db = *db_;
  const TempDir& dir = dir_;
  CoordinatorProcess coordinator(db.url(), dir.path(), {"--format", format, "--adopt"});
  std::string out;
  EXPECT_EQ(AgentWait(coordinator.address(), dir.path(), format, &out), 0)
      << out << coordinator.process().Log();
  EXPECT_EQ(db.Query("SELECT count(*) FROM schemagate.migrations WHERE state = 'applied'"), "12");
  EXPECT_EQ(db.Query("SELECT count(*) FROM users"), "2");
}

INSTANTIATE_TEST_SUITE_P(Tools, AdoptTest, ::testing::Values("goose", "dbmate", "flyway"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace schemagate
