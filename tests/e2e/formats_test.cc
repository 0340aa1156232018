// A set written for goose, dbmate or Flyway, unchanged: twelve migrations
// (one outside a transaction, one plpgsql function, a down for each) in the
// tool's own format, applied by schemagated to a fresh database; status is
// CURRENT, an agent given the same files and --format is READY, the last
// migration's down rolls back and applies again; the schema is
// pg_dump-identical to the one the tool gives the same files (dbmate: the
// real dbmate from npm; goose, Flyway: format_sets.h MigrateAsTheTool).
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/format_sets.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::AgentWait;
using ::schemagate::testing::BinaryPath;
using ::schemagate::testing::CoordinatorProcess;
using ::schemagate::testing::MigrateAsTheTool;
using ::schemagate::testing::RunBinary;
using ::schemagate::testing::SchemaDump;
using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;
using ::schemagate::testing::ToolTable;
using ::schemagate::testing::WriteSet;
using ::testing::HasSubstr;

std::vector<std::string> Ctl(const std::string& coordinator, std::vector<std::string> args) {
  std::vector<std::string> argv = {BinaryPath("schemagatectl")};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--coordinator", coordinator});
  return argv;
}

class FormatsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { SG_REQUIRE_DATABASE(); }
};

TEST_P(FormatsTest, ASetInTheToolsFormatAppliesAndAnAgentIsReady) {
  const std::string format = GetParam();
  TempDir dir;
  const std::vector<std::string> versions = WriteSet(dir, format);
  TestDatabase db;
  CoordinatorProcess coordinator(db.url(), dir.path(), {"--format", format});
  std::string out;
  EXPECT_EQ(AgentWait(coordinator.address(), dir.path(), format, &out), 0)
      << out << coordinator.process().Log();
  EXPECT_THAT(coordinator.process().Log(),
              HasSubstr(absl::StrCat("(", format, " format, head ", versions.back(), ")")));
  EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"status"}), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("CURRENT"));
  EXPECT_EQ(db.Query("SELECT count(*) FROM schemagate.migrations WHERE state = 'applied'"), "12");
  EXPECT_EQ(db.Query("SELECT max(version) FROM schemagate.migrations"), versions.back());
  // Built outside a transaction, and valid.
  EXPECT_EQ(db.Query("SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_email'::regclass"),
            "t");
  EXPECT_EQ(db.Query("SELECT count(*) FROM users"), "2");
  // The agent's check with the files and format agrees.
  EXPECT_EQ(RunBinary({BinaryPath("schemagate-agent"), "check", "--coordinator",
                       coordinator.address(), "--migrations-dir", dir.path(), "--format", format},
                      &out),
            0)
      << out;
  EXPECT_EQ(RunBinary({BinaryPath("schemagatectl"), "lint", "--migrations-dir", dir.path(),
                       "--format", format},
                      &out),
            0)
      << out;

  // The down of the last migration, then the set again.
  EXPECT_EQ(
      RunBinary(Ctl(coordinator.address(), {"rollback", "--target", versions[versions.size() - 2]}),
                &out),
      0)
      << out;
  EXPECT_EQ(db.Query("SELECT count(*) FROM pg_tables WHERE tablename = 'tags'"), "0");
  EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"apply", "--target", versions.back()}), &out), 0)
      << out;
  EXPECT_EQ(db.Query("SELECT count(*) FROM pg_tables WHERE tablename = 'tags'"), "1");
  EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"status"}), &out), 0) << out;

  // The schema the tool gives the same files (dbmate: the real dbmate;
  // goose, Flyway: each up as the tool runs it), pg_dump-identical.
  std::string dbmate;
  if (format == "dbmate") {
    SG_REQUIRE_DBMATE(found);
    dbmate = found;
  }
  TestDatabase by_tool;
  ASSERT_TRUE(MigrateAsTheTool(by_tool, dir, format, dbmate));
  EXPECT_EQ(SchemaDump(db.url(), {"--exclude-schema=schemagate"}),
            SchemaDump(by_tool.url(), {"--exclude-table=" + ToolTable(format)}));
}

INSTANTIATE_TEST_SUITE_P(Formats, FormatsTest, ::testing::Values("goose", "dbmate", "flyway"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// Mixed formats, a goose Go migration, a Flyway Java migration: refused at
// load, with file and reason, exit 2, before the database is touched.
TEST(FormatRefusalTest, RefusedAtLoadWithFileAndReason) {
  SG_REQUIRE_DATABASE();
  struct Case {
    std::vector<std::pair<std::string, std::string>> files;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{{"0001_a.up.sql", "SELECT 1;\n"}, {"0002_b.sql", "-- +goose Up\nSELECT 1;\n"}},
       "files of more than one format: golang-migrate ("},
      {{{"0001_a.sql", "-- +goose Up\nSELECT 1;\n"}, {"0002_seed.go", "package m\n"}},
       "0002_seed.go:1: goose Go migrations are not supported; port it to SQL"},
      {{{"V1__a.sql", "SELECT 1;\n"}, {"V2__Seed.java", "class V2__Seed {}\n"}},
       "V2__Seed.java:1: Flyway Java migrations are not supported"},
  };
  for (const Case& c : cases) {
    TempDir dir;
    for (const auto& [name, content] : c.files) dir.Write(name, content);
    TestDatabase db;
    std::string out;
    EXPECT_EQ(RunBinary({BinaryPath("schemagated"), "--database-url", db.url(), "--migrations-dir",
                         dir.path(), "--listen", "127.0.0.1:0"},
                        &out, absl::Seconds(30)),
              2)
        << out;
    EXPECT_THAT(out, HasSubstr(c.expected));
    EXPECT_EQ(db.Query("SELECT count(*) FROM pg_namespace WHERE nspname = 'schemagate'"), "0");
    EXPECT_EQ(RunBinary({BinaryPath("schemagate-agent"), "check", "--migrations-dir", dir.path(),
                         "--coordinator", "127.0.0.1:1"},
                        &out),
              2)
        << out;
    EXPECT_THAT(out, HasSubstr(c.expected));
  }
}

}  // namespace
}  // namespace schemagate
