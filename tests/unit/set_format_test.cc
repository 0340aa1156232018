// The formats a set can be written in (docs/formats.md): goose, dbmate and
// Flyway read into the same migrations golang-migrate's files give, with
// each tool's directives mapped, its known pitfalls refused with file and
// line, and a directory mixing formats refused. Repeatables: Flyway's
// R__<name>.sql and the other formats' repeatable/<name>.sql.
#include "coordinator/engine/set_format.h"

#include <map>
#include <string>
#include <vector>

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
using ::testing::Not;

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

constexpr char kGooseFunction[] =
    "-- +goose Up\n"                                             // 1
    "CREATE TABLE items (id serial PRIMARY KEY, label text);\n"  // 2
    "INSERT INTO items (label)\n"                                // 3
    "VALUES ('Download report');\n"                              // 4
    "-- +goose StatementBegin\n"                                 // 5
    "CREATE FUNCTION touch() RETURNS trigger AS $$\n"            // 6
    "BEGIN\n"                                                    // 7
    "  NEW.label := lower(NEW.label); RETURN NEW;\n"             // 8
    "END;\n"                                                     // 9
    "$$ LANGUAGE plpgsql;\n"                                     // 10
    "COMMENT ON FUNCTION touch() IS 'lower-cases';\n"            // 11
    "-- +goose StatementEnd\n"                                   // 12
    "\n"                                                         // 13
    "-- +goose Down\n"                                           // 14
    "DROP FUNCTION touch();\n"                                   // 15
    "DROP TABLE items;\n";                                       // 16

TEST(GooseFormatTest, ReadsUpAndDownSectionsAndKeepsAStatementBlockWhole) {
  absl::StatusOr<MigrationSet> set = Load({{"00001_items.sql", kGooseFunction}});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->format(), SetFormat::kGoose);
  ASSERT_EQ(set->migrations().size(), 1u);
  const Migration& m = set->migrations()[0];
  EXPECT_EQ(m.version, 1);
  EXPECT_EQ(m.name, "items");
  EXPECT_TRUE(m.transactional());
  // The VALUES line with "Down" in it is no section boundary; the block of
  // lines 6-11 is one statement.
  ASSERT_EQ(m.up.statements.size(), 3u);
  EXPECT_THAT(m.up.statements[1].text, HasSubstr("'Download report'"));
  EXPECT_EQ(m.up.statements[2].line, 6);
  EXPECT_THAT(m.up.statements[2].text,
              AllOf(HasSubstr("LANGUAGE plpgsql"), HasSubstr("COMMENT ON FUNCTION")));
  ASSERT_TRUE(m.down.has_value());
  ASSERT_EQ(m.down->statements.size(), 2u);
  EXPECT_EQ(m.down->statements[0].line, 15);
  // The checksum is of the bytes up to the Down section.
  const std::string content = kGooseFunction;
  EXPECT_EQ(m.checksum, MigrationChecksum(content.substr(0, content.find("-- +goose Down"))));
}

TEST(GooseFormatTest, NoTransactionCrlfTrailingBlanksAnyCaseAndNoDown) {
  absl::StatusOr<MigrationSet> set = Load({
      {"001_users.sql", "-- +goose Up   \r\nCREATE TABLE users (id int, email text);\r\n"},
      {"002_index.sql",
       "-- +goose NO TRANSACTION\n--+goose up\n"
       "CREATE INDEX CONCURRENTLY users_email ON users (email);\n"
       "-- +goose DOWN\nDROP INDEX CONCURRENTLY users_email;\n"},
  });
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->migrations().size(), 2u);
  EXPECT_FALSE(set->Find(1)->down.has_value());
  EXPECT_EQ(set->Find(1)->checksum,
            MigrationChecksum("-- +goose Up   \nCREATE TABLE users (id int, email text);\n"));
  EXPECT_FALSE(set->Find(2)->transactional());
  ASSERT_TRUE(set->Find(2)->down.has_value());
  EXPECT_FALSE(set->Find(2)->down->transactional());
}

TEST(GooseFormatTest, RefusesWhatGooseRefusesOrWouldMisreadWithFileAndLine) {
  EXPECT_THAT(Error({{"001_a.sql", "CREATE TABLE a (id int);\n"},
                     {"002_b.sql", "-- +goose Up\nSELECT 1;\n"}}),
              HasSubstr("m/001_a.sql:1: no '-- +goose Up' annotation"));
  EXPECT_THAT(Error({{"001_a.sql", "-- hello\nCREATE TABLE a (id int);\n-- +goose Up\n"}}),
              HasSubstr("m/001_a.sql:2: SQL before '-- +goose Up'"));
  EXPECT_THAT(Error({{"001_a.sql", "-- +goose Up\nSELECT 1;\n-- +goose Dwn\n"}}),
              HasSubstr("m/001_a.sql:3: unknown goose annotation '-- +goose Dwn'"));
  EXPECT_THAT(Error({{"001_a.sql", "-- +goose Up\n  -- +goose Down\nSELECT 1;\n"}}),
              HasSubstr("m/001_a.sql:2: '-- +goose Down' is indented"));
  EXPECT_THAT(Error({{"001_a.sql", "-- +goose Up\n-- +goose StatementBegin\nSELECT 1;\n"}}),
              HasSubstr("m/001_a.sql:2: '-- +goose StatementBegin' has no"));
  EXPECT_THAT(Error({{"001_a.sql", "-- +goose Up\nSELECT 1;\n-- +goose StatementEnd\n"}}),
              HasSubstr("m/001_a.sql:3: '-- +goose StatementEnd' without a StatementBegin"));
  EXPECT_THAT(Error({{"001_a.sql", "-- +goose Up\nSELECT 1;\n-- +goose Up\n"}}),
              HasSubstr("m/001_a.sql:3: a second '-- +goose Up'"));
  EXPECT_THAT(Error({{"001_a.sql", "-- +goose ENVSUB ON\n-- +goose Up\nSELECT '${X}';\n"}}),
              HasSubstr("m/001_a.sql:1: '-- +goose ENVSUB ON' is not supported"));
  EXPECT_THAT(
      Error({{"001_a.sql", "-- +goose Up\nSELECT 1;\n"}, {"002_seed.go", "package migrations\n"}}),
      HasSubstr("m/002_seed.go:1: goose Go migrations are not supported; port it to SQL"));
  // CONCURRENTLY needs NO TRANSACTION, as in goose.
  EXPECT_THAT(Error({{"001_a.sql", "-- +goose Up\n\nCREATE INDEX CONCURRENTLY i ON t (c);\n"}}),
              HasSubstr("m/001_a.sql:3: CREATE INDEX CONCURRENTLY cannot run inside"));
  // A parse error in the Down section names the file's own line.
  EXPECT_THAT(Error({{"001_a.sql", "-- +goose Up\nSELECT 1;\n-- +goose Down\n\nDROP TABL a;\n"}}),
              HasSubstr("m/001_a.sql:5"));
  EXPECT_THAT(
      Error({{"001_a.sql", "-- +goose Up\nSELECT 1;\n"}, {"1_b.sql", "-- +goose Up\nSELECT 2;\n"}}),
      HasSubstr("duplicate version 1"));
}

TEST(DbmateFormatTest, ReadsSectionsAndTransactionFalseOnTheMarkerLine) {
  const std::string index =
      "-- migrate:up transaction:false\r\n"
      "CREATE INDEX CONCURRENTLY users_email ON users (email);\r\n"
      "\r\n"
      "-- migrate:down\r\n"
      "DROP INDEX users_email;\r\n";
  absl::StatusOr<MigrationSet> set = Load({
      {"20240101000000_users.sql",
       "-- a comment first\n--migrate:up\nCREATE TABLE users (id int, email text);\n"
       "-- migrate:down\n"},
      {"20240102000000_index.sql", index},
  });
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->format(), SetFormat::kDbmate);
  ASSERT_EQ(set->migrations().size(), 2u);
  const Migration& users = set->migrations()[0];
  EXPECT_EQ(users.version, 20240101000000);
  EXPECT_TRUE(users.transactional());
  ASSERT_TRUE(users.down.has_value());
  EXPECT_TRUE(users.down->statements.empty());
  const Migration& m = set->migrations()[1];
  EXPECT_FALSE(m.transactional());
  ASSERT_TRUE(m.down.has_value());
  EXPECT_TRUE(m.down->transactional());
  EXPECT_EQ(m.down->statements[0].line, 5);
  EXPECT_EQ(m.checksum, MigrationChecksum(index.substr(0, index.find("-- migrate:down"))));
}

TEST(DbmateFormatTest, RefusesWhatDbmateRefusesAndOptionsItWouldDrop) {
  EXPECT_THAT(Error({{"1_a.sql", "-- migrate:down\nDROP TABLE a;\n"}}),
              HasSubstr("m/1_a.sql:1: no '-- migrate:up' line"));
  EXPECT_THAT(Error({{"1_a.sql", "-- migrate:up\nCREATE TABLE a (id int);\n"}}),
              HasSubstr("m/1_a.sql:1: no '-- migrate:down' line"));
  EXPECT_THAT(Error({{"1_a.sql", "-- migrate:down\nSELECT 1;\n-- migrate:up\nSELECT 2;\n"}}),
              HasSubstr("m/1_a.sql:1: '-- migrate:down' comes before '-- migrate:up'"));
  EXPECT_THAT(
      Error({{"1_a.sql", "CREATE TYPE s AS ENUM ('a');\n-- migrate:up\n-- migrate:down\n"}}),
      HasSubstr("m/1_a.sql:1: SQL before '-- migrate:up'"));
  // dbmate reads "transaction: false" as transaction="" and runs it in a
  // transaction.
  EXPECT_THAT(
      Error({{"1_a.sql", "-- migrate:up transaction: false\nSELECT 1;\n-- migrate:down\n"}}),
      HasSubstr("m/1_a.sql:1: unknown dbmate option 'transaction:'"));
  EXPECT_THAT(Error({{"1_a.sql",
                      "-- migrate:up\nCREATE INDEX CONCURRENTLY i ON t (c);\n-- migrate:down\n"}}),
              HasSubstr("m/1_a.sql:2: CREATE INDEX CONCURRENTLY cannot run inside"));
}

TEST(FlywayFormatTest, OrdersDottedVersionsAsFlywayDoes) {
  Files files;
  for (const char* name : {"V2__two.sql", "V1.10__ten.sql", "V1_2__two_parts.sql", "V1__one.sql",
                           "V1.1__one_one.sql", "V1.2.3__three.sql"}) {
    files[name] = "SELECT 1;\n";
  }
  files["U1.1__undo.sql"] = "SELECT 2;\n";
  absl::StatusOr<MigrationSet> set = Load(files);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->format(), SetFormat::kFlyway);
  std::vector<std::string> order;
  for (const Migration& m : set->migrations()) order.push_back(m.name);
  EXPECT_THAT(order, ::testing::ElementsAre("one", "one_one", "two_parts", "three", "ten", "two"));
  EXPECT_EQ(set->migrations()[0].version, 1000000000000000);
  EXPECT_EQ(set->migrations()[3].version, 1002003000000000);
  EXPECT_EQ(set->migrations()[4].version, 1010000000000000);
  ASSERT_TRUE(set->migrations()[1].down.has_value());
  EXPECT_THAT(set->migrations()[1].down->path, HasSubstr("U1.1__undo.sql"));
  EXPECT_FALSE(set->migrations()[0].down.has_value());
}

TEST(FlywayFormatTest, PlainVersionsAreStoredAsTheyAre) {
  absl::StatusOr<MigrationSet> set = Load({{"V1__a.sql", "SELECT 1;\n"},
                                           {"V010__b.sql", "SELECT 1;\n"},
                                           {"V20240101120000__c.sql", "SELECT 1;\n"},
                                           {"V2.0__d.sql", "SELECT 1;\n"}});
  ASSERT_TRUE(set.ok()) << set.status();
  std::vector<int64_t> versions;
  for (const Migration& m : set->migrations()) versions.push_back(m.version);
  EXPECT_THAT(versions, ::testing::ElementsAre(1, 2, 10, 20240101120000));
}

TEST(FlywayFormatTest, NoTransactionWhereAStatementNeedsItOrTheConfSaysSo) {
  absl::StatusOr<MigrationSet> set = Load({
      {"V1__t.sql", "CREATE TABLE t (c int);\n"},
      {"V2__i.sql", "CREATE INDEX CONCURRENTLY i ON t (c);\n"},
      {"V3__v.sql", "VACUUM t;\n"},
      {"V4__n.sql", "CREATE TABLE n (c int);\n"},
      {"V4__n.sql.conf", "# flyway\nexecuteInTransaction=false\n"},
  });
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_TRUE(set->Find(1)->transactional());
  EXPECT_FALSE(set->Find(2)->transactional());
  EXPECT_FALSE(set->Find(3)->transactional());
  EXPECT_FALSE(set->Find(4)->transactional());
}

TEST(FlywayFormatTest, RefusesWhatItCannotRunNamingTheFile) {
  EXPECT_THAT(Error({{"V1__a.sql", "SELECT 1;\n"}, {"V2__Seed.java", "class V2__Seed {}\n"}}),
              HasSubstr("m/V2__Seed.java:1: Flyway Java migrations are not supported"));
  // A compiled one (what Flyway loads from the classpath), named too.
  EXPECT_THAT(Error({{"V1__a.sql", "SELECT 1;\n"}, {"V2__Seed.class", "\xca\xfe\xba\xbe"}}),
              HasSubstr("m/V2__Seed.class:1: Flyway Java migrations are not supported"));
  EXPECT_THAT(Error({{"V1__a.sql", "SELECT 1;\n"}, {"V1.0__b.sql", "SELECT 1;\n"}}),
              HasSubstr("duplicate version 1"));
  EXPECT_THAT(Error({{"V1__a.sql", "SELECT 1;\n"}, {"U2__b.sql", "SELECT 1;\n"}}),
              HasSubstr("m/U2__b.sql:1: undo migration without a versioned one"));
  EXPECT_THAT(Error({{"V1.1000__a.sql", "SELECT 1;\n"}}),
              HasSubstr("m/V1.1000__a.sql:1: version 1.1000 cannot be stored"));
  EXPECT_THAT(Error({{"V1.a__a.sql", "SELECT 1;\n"}}),
              HasSubstr("m/V1.a__a.sql:1: '1.a' is not a Flyway version"));
  EXPECT_THAT(Error({{"V1__a.sql", "-- x\nCREATE SCHEMA ${schema};\n"}}),
              HasSubstr("m/V1__a.sql:2: Flyway placeholder '${schema}' is not supported"));
}

TEST(GolangMigrateFormatTest, HonoursMorphNontransactional) {
  absl::StatusOr<MigrationSet> set = Load({
      {"000001_t.up.sql", "CREATE TABLE t (c int);\n"},
      {"000002_i.up.sql", "-- morph:nontransactional\nCREATE INDEX CONCURRENTLY i ON t (c);\n"},
      {"000002_i.down.sql", "-- morph:nontransactional\nDROP INDEX CONCURRENTLY i;\n"},
  });
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->format(), SetFormat::kGolangMigrate);
  EXPECT_FALSE(set->Find(2)->transactional());
  EXPECT_FALSE(set->Find(2)->down->transactional());
}

TEST(SetFormatTest, AutoRefusesADirectoryMixingFormatsNamingFilesOfEach) {
  const std::string error = Error({{"0001_a.up.sql", "SELECT 1;\n"},
                                   {"0002_b.sql", "-- +goose Up\nSELECT 1;\n"},
                                   {"V3__c.sql", "SELECT 1;\n"}});
  EXPECT_THAT(error, AllOf(HasSubstr("m: files of more than one format"),
                           HasSubstr("golang-migrate (m/0001_a.up.sql)"),
                           HasSubstr("goose (m/0002_b.sql)"), HasSubstr("flyway (m/V3__c.sql)")));
  EXPECT_THAT(Error({{"0001_a.sql", "-- migrate:up\nSELECT 1;\n-- migrate:down\n"},
                     {"0002_b.sql", "-- +goose Up\nSELECT 1;\n"}}),
              AllOf(HasSubstr("dbmate (m/0001_a.sql)"), HasSubstr("goose (m/0002_b.sql)")));
  EXPECT_THAT(Error({{"0001_a.sql", "SELECT 1;\n"}}),
              HasSubstr("m: cannot tell the format of m/0001_a.sql"));
}

TEST(SetFormatTest, AnExplicitFormatReadsOnlyItsFiles) {
  const Files files = {{"0001_a.up.sql", "SELECT 1;\n"},
                       {"README.md", "notes\n"},
                       {"0002_b.sql", "-- +goose Up\nSELECT 2;\n"}};
  std::vector<std::string> warnings;
  absl::StatusOr<MigrationSet> set = Load(files, SetFormat::kGolangMigrate, &warnings);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->migrations().size(), 1u);
  EXPECT_THAT(warnings, ::testing::Contains(HasSubstr("m/0002_b.sql: ignored")));
  // A plain golang-migrate set with a README is golang-migrate.
  set = Load({{"0001_a.up.sql", "SELECT 1;\n"}, {"README.md", "notes\n"}});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->format(), SetFormat::kGolangMigrate);
  EXPECT_EQ(Load({}).value().format(), SetFormat::kGolangMigrate);
}

TEST(SetFormatTest, ParsesFormatNames) {
  for (const std::string& name : SetFormatNames()) {
    absl::StatusOr<SetFormat> format = ParseSetFormat(name);
    ASSERT_TRUE(format.ok()) << name;
    EXPECT_EQ(SetFormatName(*format), name);
  }
  EXPECT_THAT(std::string(ParseSetFormat("sqitch").status().message()),
              HasSubstr("auto|golang-migrate|goose|dbmate|flyway"));
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
