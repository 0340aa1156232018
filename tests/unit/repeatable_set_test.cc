// Repeatable migrations in a set: Flyway's R__<name>.sql, the other
// formats' repeatable/<name>.sql; name order, checksums, statements, the
// directives they honour and the problems they are refused for, with file
// and line.
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "coordinator/engine/lint_policy.h"
#include "coordinator/engine/migration_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

using Files = std::map<std::string, std::string>;

absl::StatusOr<MigrationSet> Load(const Files& files, SetFormat format = SetFormat::kAuto,
                                  std::vector<std::string>* warnings = nullptr) {
  std::vector<std::string> ignored;
  return MigrationSet::LoadFiles("m", files, warnings != nullptr ? warnings : &ignored, format);
}

std::string Error(const Files& files, SetFormat format = SetFormat::kAuto) {
  absl::StatusOr<MigrationSet> set = Load(files, format);
  EXPECT_FALSE(set.ok());
  return std::string(set.status().message());
}

std::vector<std::string> Names(const MigrationSet& set) {
  std::vector<std::string> names;
  for (const Repeatable& r : set.repeatables()) names.push_back(r.name);
  return names;
}

constexpr char kView[] =
    "-- schemagate:lock-timeout=2s\n"
    "CREATE OR REPLACE VIEW active AS\n"
    "  SELECT 1 AS id;\n"
    "GRANT SELECT ON active TO PUBLIC;\n";

TEST(RepeatableSetTest, FlywayRFilesAreRepeatablesInNameOrderNotVersions) {
  absl::StatusOr<MigrationSet> set = Load({{"V1__t.sql", "CREATE TABLE t (c int);\n"},
                                           {"R__views.sql", kView},
                                           {"R__a_grants.sql", "GRANT SELECT ON t TO PUBLIC;\n"}});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->format(), SetFormat::kFlyway);
  EXPECT_EQ(set->migrations().size(), 1u);
  EXPECT_THAT(Names(*set), ElementsAre("a_grants", "views"));
  const Repeatable* views = set->FindRepeatable("views");
  ASSERT_NE(views, nullptr);
  EXPECT_EQ(views->Label(), "repeatable views");
  EXPECT_EQ(views->script.path, "m/R__views.sql");
  EXPECT_EQ(views->checksum, MigrationChecksum(kView));
  ASSERT_EQ(views->script.statements.size(), 2u);
  EXPECT_EQ(views->script.statements[0].line, 2);
  EXPECT_EQ(views->script.statements[1].line, 4);
  EXPECT_EQ(views->script.directives.lock_timeout, absl::Seconds(2));
  EXPECT_TRUE(views->script.transactional());
  EXPECT_EQ(set->FindRepeatable("nope"), nullptr);
}

TEST(RepeatableSetTest, TheOtherFormatsKeepRepeatablesInARepeatableFolder) {
  const char* kGoose = "-- +goose Up\nCREATE TABLE t (c int);\n-- +goose Down\nDROP TABLE t;\n";
  const char* kDbmate = "-- migrate:up\nCREATE TABLE t (c int);\n-- migrate:down\nDROP TABLE t;\n";
  const Files sets[] = {
      {{"0001_t.up.sql", "CREATE TABLE t (c int);\n"}},
      {{"0001_t.sql", kGoose}},
      {{"0001_t.sql", kDbmate}},
  };
  for (Files files : sets) {
    files["repeatable/views.sql"] = kView;
    files["repeatable/functions.sql"] =
        "CREATE OR REPLACE FUNCTION one() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql;\n";
    files["repeatable/README.md"] = "notes\n";
    std::vector<std::string> warnings;
    absl::StatusOr<MigrationSet> set = Load(files, SetFormat::kAuto, &warnings);
    ASSERT_TRUE(set.ok()) << set.status();
    EXPECT_EQ(set->migrations().size(), 1u) << SetFormatName(set->format());
    EXPECT_THAT(Names(*set), ElementsAre("functions", "views"));
    EXPECT_EQ(set->FindRepeatable("views")->script.path, "m/repeatable/views.sql");
    EXPECT_THAT(warnings, ::testing::Contains(HasSubstr("m/repeatable/README.md: ignored")));
  }
  // A set of repeatables only.
  absl::StatusOr<MigrationSet> only = Load({{"repeatable/views.sql", kView}});
  ASSERT_TRUE(only.ok()) << only.status();
  EXPECT_THAT(only->migrations(), IsEmpty());
  EXPECT_THAT(Names(*only), ElementsAre("views"));
}

TEST(RepeatableSetTest, ChecksumFoldsCrlfAndChangesWithTheBytesRun) {
  absl::StatusOr<MigrationSet> lf = Load({{"repeatable/v.sql", "SELECT 1;\nSELECT 2;\n"}});
  absl::StatusOr<MigrationSet> crlf = Load({{"repeatable/v.sql", "SELECT 1;\r\nSELECT 2;\r\n"}});
  absl::StatusOr<MigrationSet> edited = Load({{"repeatable/v.sql", "SELECT 1;\nSELECT 3;\n"}});
  ASSERT_TRUE(lf.ok() && crlf.ok() && edited.ok());
  EXPECT_EQ(lf->repeatables()[0].checksum, crlf->repeatables()[0].checksum);
  EXPECT_NE(lf->repeatables()[0].checksum, edited->repeatables()[0].checksum);
  EXPECT_EQ(lf->repeatables()[0].checksum.size(), 64u);
}

TEST(RepeatableSetTest, RefusesWhatCannotBeReappliedWholeWithFileAndLine) {
  EXPECT_THAT(Error({{"repeatable/v.sql", "SELECT 1;\nCREATE VIEW v AS SELEC 1;\n"}}),
              HasSubstr("m/repeatable/v.sql:2:"));
  EXPECT_THAT(Error({{"repeatable/v.sql", "-- schemagate:no-transaction\nSELECT 1;\n"}}),
              HasSubstr("m/repeatable/v.sql:1: a repeatable migration runs in one transaction"));
  EXPECT_THAT(Error({{"R__i.sql", "-- morph\nCREATE INDEX CONCURRENTLY i ON t (c);\n"}}),
              HasSubstr("m/R__i.sql:2: CREATE INDEX CONCURRENTLY cannot run inside a transaction"));
  EXPECT_THAT(Error({{"repeatable/v.sql", "BEGIN;\nSELECT 1;\nCOMMIT;\n"}}),
              HasSubstr("m/repeatable/v.sql:1: transaction control statement"));
  EXPECT_THAT(Error({{"repeatable/v.sql", "-- schemagate:lock-timout=1s\nSELECT 1;\n"}}),
              HasSubstr("m/repeatable/v.sql:1: unknown directive 'lock-timout'"));
  EXPECT_THAT(Error({{"R__v.sql", "-- x\nGRANT SELECT ON t TO ${role};\n"}}),
              HasSubstr("m/R__v.sql:2: Flyway placeholder '${role}' is not supported"));
  EXPECT_THAT(Error({{"R__.sql", "SELECT 1;\n"}}),
              HasSubstr("m/R__.sql:1: a repeatable needs a name"));
  // Each format's own scheme only.
  EXPECT_THAT(Error({{"V1__t.sql", "SELECT 1;\n"}, {"repeatable/v.sql", "SELECT 1;\n"}}),
              HasSubstr("m/repeatable/v.sql:1: a Flyway set's repeatables are R__<name>.sql"));
  EXPECT_THAT(Error({{"0001_t.up.sql", "SELECT 1;\n"}, {"R__v.sql", "SELECT 1;\n"}},
                    SetFormat::kGolangMigrate),
              HasSubstr("m/R__v.sql:1: an R__ file is a Flyway repeatable; in a golang-migrate "
                        "set a repeatable is repeatable/<name>.sql"));
}

TEST(RepeatableSetTest, TheAgentsHeaderOnlyLoadChecksumsRepeatablesToo) {
  std::vector<std::string> warnings;
  absl::StatusOr<MigrationSet> set = MigrationSet::LoadFilesWith(
      "m", {{"R__views.sql", kView}}, nullptr, &warnings, SetFormat::kAuto);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->repeatables().size(), 1u);
  EXPECT_EQ(set->repeatables()[0].checksum, MigrationChecksum(kView));
  EXPECT_THAT(set->repeatables()[0].script.statements, IsEmpty());
}

TEST(RepeatableSetTest, ADirectoryIsReadWithItsFolderAndItsFingerprintSeesEdits) {
  testing::TempDir dir;
  dir.Write("0001_t.up.sql", "CREATE TABLE t (c int);\n");
  dir.Write("repeatable/views.sql", kView);
  std::vector<std::string> warnings;
  absl::StatusOr<MigrationSet> set = MigrationSet::LoadDirectory(dir.path(), &warnings);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_THAT(Names(*set), ElementsAre("views"));
  EXPECT_EQ(set->repeatables()[0].script.path, dir.path() + "/repeatable/views.sql");
  const absl::StatusOr<std::string> before = DirectoryFingerprint(dir.path());
  dir.Write("repeatable/views.sql", std::string(kView) + "SELECT 2;\n");
  const absl::StatusOr<std::string> after = DirectoryFingerprint(dir.path());
  ASSERT_TRUE(before.ok() && after.ok());
  EXPECT_NE(*before, *after);
  EXPECT_THAT(*after, HasSubstr("repeatable/views.sql"));
}

TEST(RepeatableSetTest, RepeatablesAreLintedAndLintIgnoreWaives) {
  testing::TempDir dir;
  dir.Write("0001_t.up.sql", "CREATE TABLE t (c int);\n");
  dir.Write("repeatable/cleanup.sql", "DROP TABLE t;\n");
  std::vector<std::string> warnings;
  absl::StatusOr<MigrationSet> set =
      LoadLintedSet(dir.path(), SetFormat::kAuto, LintPolicy(), &warnings, nullptr);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(std::string(set.status().message()),
              AllOf(HasSubstr("repeatable/cleanup.sql:1"), HasSubstr("drop-table-not-breaking")));
  dir.Write("repeatable/cleanup.sql",
            "-- schemagate:lint-ignore=drop-table-not-breaking reason: t is unused\n"
            "DROP TABLE t;\n");
  set = LoadLintedSet(dir.path(), SetFormat::kAuto, LintPolicy(), &warnings, nullptr);
  EXPECT_TRUE(set.ok()) << set.status();
}

}  // namespace
}  // namespace schemagate
