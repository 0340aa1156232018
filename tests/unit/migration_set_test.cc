#include "coordinator/engine/migration_set.h"

#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::TempDir;
using ::testing::HasSubstr;

absl::StatusOr<MigrationSet> Load(const TempDir& dir, std::vector<std::string>* warnings = nullptr) {
  std::vector<std::string> ignored;
  return MigrationSet::LoadDirectory(dir.path(), warnings != nullptr ? warnings : &ignored);
}

TEST(MigrationSetTest, LoadsOrderedMigrationsWithDirectivesAndDowns) {
  TempDir dir;
  dir.Write("0002_add_index.up.sql",
            "-- schemagate:no-transaction\n-- schemagate:lock-timeout=2s\n"
            "CREATE INDEX CONCURRENTLY users_email ON users (email);\n");
  dir.Write("0002_add_index.down.sql",
            "-- schemagate:no-transaction\nDROP INDEX CONCURRENTLY users_email;\n");
  dir.Write("0001_users.up.sql", "CREATE TABLE users (id bigint, email text);\n");
  dir.Write("0003_1.7.0_contract.up.sql",
            "-- schemagate:breaking\n-- schemagate:statement-timeout=10m\n"
            "ALTER TABLE users DROP COLUMN email;\n");
  absl::StatusOr<MigrationSet> set = Load(dir);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->migrations().size(), 3u);
  EXPECT_EQ(set->migrations()[0].version, 1);
  EXPECT_EQ(set->migrations()[1].version, 2);
  EXPECT_EQ(set->migrations()[2].name, "1.7.0_contract");
  EXPECT_EQ(set->Head(), 3);
  EXPECT_EQ(set->HighestNonBreaking(), 2);
  const Migration* index = set->Find(2);
  ASSERT_NE(index, nullptr);
  EXPECT_FALSE(index->transactional());
  EXPECT_EQ(index->up.directives.lock_timeout, absl::Seconds(2));
  ASSERT_TRUE(index->down.has_value());
  EXPECT_FALSE(index->down->transactional());
  EXPECT_FALSE(set->Find(1)->down.has_value());
  EXPECT_TRUE(set->Find(3)->breaking());
  EXPECT_EQ(set->Find(3)->up.directives.statement_timeout, absl::Minutes(10));
  EXPECT_EQ(set->Find(4), nullptr);
  EXPECT_EQ(index->checksum.size(), 64u);
}

TEST(MigrationSetTest, ChecksumFoldsCrlfToLf) {
  EXPECT_EQ(MigrationChecksum("SELECT 1;\r\nSELECT 2;\r\n"),
            MigrationChecksum("SELECT 1;\nSELECT 2;\n"));
  EXPECT_NE(MigrationChecksum("SELECT 1;\n"), MigrationChecksum("SELECT 2;\n"));
  // SHA-256 of the empty string.
  EXPECT_EQ(MigrationChecksum(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(MigrationSetTest, DuplicateVersionIsRefusedNamingBothFiles) {
  TempDir dir;
  dir.Write("1_a.up.sql", "SELECT 1;\n");
  dir.Write("0001_b.up.sql", "SELECT 2;\n");
  absl::StatusOr<MigrationSet> set = Load(dir);
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(set.status().message(), HasSubstr("duplicate version 1"));
  EXPECT_THAT(set.status().message(), HasSubstr("0001_b.up.sql"));
  EXPECT_THAT(set.status().message(), HasSubstr("1_a.up.sql:1:"));
}

TEST(MigrationSetTest, DownWithoutUpIsRefused) {
  TempDir dir;
  dir.Write("0001_a.up.sql", "SELECT 1;\n");
  dir.Write("0002_b.down.sql", "SELECT 2;\n");
  absl::StatusOr<MigrationSet> set = Load(dir);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(), HasSubstr("0002_b.down.sql:1: down migration without an up"));
}

TEST(MigrationSetTest, UnparsableSqlIsRefusedWithFileAndLine) {
  TempDir dir;
  dir.Write("0001_bad.up.sql", "-- a comment\nCREATE TABLE ok (id int);\nCREATE TABLE (id int);\n");
  absl::StatusOr<MigrationSet> set = Load(dir);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(), HasSubstr("0001_bad.up.sql:3: syntax error"));
  EXPECT_THAT(set.status().message(), HasSubstr("cannot parse"));
}

TEST(MigrationSetTest, ConcurrentlyInTransactionalMigrationIsRefusedWithLine) {
  TempDir dir;
  dir.Write("0001_idx.up.sql",
            "CREATE TABLE t (id int);\n\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n");
  absl::StatusOr<MigrationSet> set = Load(dir);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(),
              HasSubstr("0001_idx.up.sql:3: CREATE INDEX CONCURRENTLY cannot run inside a transaction"));
  EXPECT_THAT(set.status().message(), HasSubstr("-- schemagate:no-transaction"));
}

TEST(MigrationSetTest, ConcurrentlyInDownNeedsNoTransactionToo) {
  TempDir dir;
  dir.Write("0001_idx.up.sql", "-- schemagate:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (id);\n");
  dir.Write("0001_idx.down.sql", "DROP INDEX CONCURRENTLY i;\n");
  absl::StatusOr<MigrationSet> set = Load(dir);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(), HasSubstr("0001_idx.down.sql:1: DROP INDEX CONCURRENTLY"));
}

TEST(MigrationSetTest, UnknownDirectiveIsRefusedWithLineAndTheKnownOnes) {
  TempDir dir;
  dir.Write("0001_a.up.sql", "-- a note\n-- schemagate:no-transactions\nSELECT 1;\n");
  absl::StatusOr<MigrationSet> set = Load(dir);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(),
              HasSubstr("0001_a.up.sql:2: unknown directive 'no-transactions'"));
  EXPECT_THAT(set.status().message(), HasSubstr("known: no-transaction"));
}

TEST(MigrationSetTest, UnknownDirectiveSuggestsTheClosestKnownOne) {
  for (const auto& [line, meant] : std::vector<std::pair<std::string, std::string>>{
           {"-- schemagate:no-transactions", "no-transaction"},
           {"-- schemagate:BREAKING", "breaking"},
           {"-- schemagate:lock_timeout=5s", "lock-timeout"},
           {"-- schemagate:lint-ignores=empty-migration reason: x", "lint-ignore"}}) {
    TempDir dir;
    dir.Write("0001_a.up.sql", line + "\nSELECT 1;\n");
    absl::StatusOr<MigrationSet> set = Load(dir);
    ASSERT_FALSE(set.ok()) << line;
    EXPECT_THAT(set.status().message(), HasSubstr("0001_a.up.sql:1: unknown directive"));
    EXPECT_THAT(set.status().message(), HasSubstr("(did you mean '" + meant + "'?)")) << line;
  }
}

// Each of these reads as a plain comment to a careless parser, so a
// "breaking" would silently not be, and lint and the breaking gate would
// let a contract change through.
TEST(MigrationSetTest, NearMissDirectivesAreRefusedWithTheRightSpelling) {
  for (const auto& [line, meant] : std::vector<std::pair<std::string, std::string>>{
           {"--schemagate:breaking", "-- schemagate:breaking"},
           {"-- SCHEMAGATE:BREAKING", "-- schemagate:breaking"},
           {"/* schemagate:breaking */", "-- schemagate:breaking"},
           {"/*schemagate:no-transaction*/", "-- schemagate:no-transaction"},
           {"-- schemagate: no-transaction", "-- schemagate:no-transaction"},
           {"--  schemagate:breaking", "-- schemagate:breaking"},
           {"-- schemagate :lock-timeout = 5s", "-- schemagate:lock-timeout=5s"},
           {"-- Schemagate:Lint-Ignore=empty-migration reason: placeholder",
            "-- schemagate:lint-ignore=empty-migration reason: placeholder"}}) {
    TempDir dir;
    dir.Write("0001_a.up.sql", "-- a note\n" + line + "\nSELECT 1;\n");
    absl::StatusOr<MigrationSet> set = Load(dir);
    ASSERT_FALSE(set.ok()) << line << " loaded as a plain comment";
    EXPECT_THAT(set.status().message(), HasSubstr("0001_a.up.sql:2: '" + line + "' is not a "
                                                  "directive as written"));
    EXPECT_THAT(set.status().message(), HasSubstr("write '" + meant + "'")) << line;
  }
  // After SQL too: it would not work even spelt right.
  TempDir dir;
  dir.Write("0001_a.up.sql", "SELECT 1;\n/* schemagate:breaking */\nSELECT 2;\n");
  absl::StatusOr<MigrationSet> set = Load(dir);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(),
              HasSubstr("write '-- schemagate:breaking' among the leading comment lines"));
}

TEST(MigrationSetTest, CommentsThatOnlyMentionSchemagateAreComments) {
  TempDir dir;
  dir.Write("0001_a.up.sql",
            "-- Managed by schemagate; see docs/safe-migrations.md\n"
            "-- schemagate: see the runbook before editing\n"
            "/* schemagate handles the lock */\n"
            "SELECT 1;\n");
  absl::StatusOr<MigrationSet> set = Load(dir);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_FALSE(set->migrations()[0].breaking());
}

TEST(MigrationSetTest, LintIgnoreDirectiveNamesRulesAndAReason) {
  TempDir dir;
  dir.Write("0001_a.up.sql",
            "-- schemagate:breaking\n"
            "-- schemagate:lint-ignore=update-without-where, empty-migration reason: predates "
            "schemagate (ticket 12)\n"
            "-- schemagate:lint-ignore=index-not-concurrent reason: tiny table\n"
            "SELECT 1;\n");
  absl::StatusOr<MigrationSet> set = Load(dir);
  ASSERT_TRUE(set.ok()) << set.status();
  const Directives& d = set->migrations()[0].up.directives;
  EXPECT_TRUE(d.breaking);
  EXPECT_EQ(d.lint_ignore, (std::map<std::string, std::string>{
                               {"update-without-where", "predates schemagate (ticket 12)"},
                               {"empty-migration", "predates schemagate (ticket 12)"},
                               {"index-not-concurrent", "tiny table"}}));
}

TEST(MigrationSetTest, LintIgnoreWithoutAReasonOrWithUnknownRulesIsRefused) {
  TempDir dir;
  dir.Write("0001_a.up.sql", "-- schemagate:lint-ignore=empty-migration\nSELECT 1;\n");
  dir.Write("0002_b.up.sql", "-- schemagate:lint-ignore=empty-migration reason:\nSELECT 1;\n");
  dir.Write("0003_c.up.sql",
            "-- schemagate:lint-ignore=rename-column,drop-column reason: old\nSELECT 1;\n");
  dir.Write("0004_d.up.sql", "-- schemagate:lint-ignore reason: everything\nSELECT 1;\n");
  dir.Write("0005_e.up.sql",
            "-- schemagate:lint-ignore=empty-migration reason: a\n"
            "-- schemagate:lint-ignore=empty-migration reason: b\nSELECT 1;\n");
  absl::StatusOr<MigrationSet> set = Load(dir);
  ASSERT_FALSE(set.ok());
  const std::string message(set.status().message());
  EXPECT_THAT(message, HasSubstr("0001_a.up.sql:1: directive 'lint-ignore' needs a reason"));
  EXPECT_THAT(message, HasSubstr("0002_b.up.sql:1: directive 'lint-ignore' needs a reason"));
  EXPECT_THAT(message, HasSubstr("write e.g. '-- schemagate:lint-ignore=rename-column-not-breaking "
                                 "reason: "));
  EXPECT_THAT(message, HasSubstr("0003_c.up.sql:1: directive 'lint-ignore': unknown lint rule "
                                 "'rename-column' (did you mean 'rename-column-not-breaking'?)"));
  EXPECT_THAT(message, HasSubstr("'drop-column' (did you mean 'drop-column-not-breaking'?)"));
  EXPECT_THAT(message, HasSubstr("known: drop-table-not-breaking, drop-column-not-breaking,"));
  EXPECT_THAT(message, HasSubstr("0004_d.up.sql:1: directive 'lint-ignore' names no lint rule"));
  EXPECT_THAT(message, HasSubstr("0005_e.up.sql:2: directive 'lint-ignore': rule "
                                 "'empty-migration' is already ignored on line 1"));
  EXPECT_THAT(message, HasSubstr("5 problems"));
}

TEST(MigrationSetTest, MalformedDirectiveValuesAreRefused) {
  TempDir dir;
  dir.Write("0001_a.up.sql", "-- schemagate:lock-timeout=soon\nSELECT 1;\n");
  dir.Write("0002_b.up.sql", "-- schemagate:breaking=yes\nSELECT 1;\n");
  dir.Write("0003_c.up.sql", "-- schemagate:statement-timeout\nSELECT 1;\n");
  absl::StatusOr<MigrationSet> set = Load(dir);
  ASSERT_FALSE(set.ok());
  const std::string message(set.status().message());
  EXPECT_THAT(message, HasSubstr("0001_a.up.sql:1: directive 'lock-timeout'"));
  EXPECT_THAT(message, HasSubstr("0002_b.up.sql:1: directive 'breaking' takes no value"));
  EXPECT_THAT(message, HasSubstr("0003_c.up.sql:1: directive 'statement-timeout': needs a value"));
  EXPECT_THAT(message, HasSubstr("3 problems"));
}

TEST(MigrationSetTest, DirectiveAfterSqlIsRefused) {
  TempDir dir;
  dir.Write("0001_a.up.sql", "SELECT 1;\n-- schemagate:no-transaction\n");
  absl::StatusOr<MigrationSet> set = Load(dir);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(), HasSubstr("0001_a.up.sql:2: directive"));
  EXPECT_THAT(set.status().message(), HasSubstr("after SQL has no effect"));
}

TEST(MigrationSetTest, NonUtf8FileIsRefusedWithLine) {
  TempDir dir;
  dir.Write("0001_a.up.sql", "SELECT 1;\nSELECT 'caf\xe9';\n");
  absl::StatusOr<MigrationSet> set = Load(dir);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(), HasSubstr("0001_a.up.sql:2: not valid UTF-8"));
}

TEST(MigrationSetTest, NulByteIsRefusedWithLine) {
  // The SQL parser would stop at the NUL and the rest of the file would
  // never run, although the checksum covers it.
  TempDir dir;
  dir.Write("0001_a.up.sql", std::string("SELECT 1;\n\0DROP TABLE users;\n", 29));
  absl::StatusOr<MigrationSet> set = Load(dir);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(), HasSubstr("0001_a.up.sql:2: NUL byte"));
}

TEST(MigrationSetTest, Utf8TextIsAccepted) {
  TempDir dir;
  dir.Write("0001_a.up.sql", "COMMENT ON SCHEMA public IS 'café ✓ 日本';\n");
  EXPECT_TRUE(Load(dir).ok());
}

TEST(MigrationSetTest, TransactionControlStatementsAreRefused) {
  TempDir dir;
  dir.Write("0001_a.up.sql", "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n");
  absl::StatusOr<MigrationSet> set = Load(dir);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(), HasSubstr("0001_a.up.sql:1: transaction control"));
  EXPECT_THAT(set.status().message(), HasSubstr("0001_a.up.sql:3: transaction control"));
}

TEST(MigrationSetTest, OtherFilesAreIgnoredWithAWarning) {
  TempDir dir;
  dir.Write("README.md", "# notes\n");
  dir.Write("0001_a.sql", "SELECT 1;\n");
  dir.Write("0002_b.up.sql", "SELECT 1;\n");
  std::vector<std::string> warnings;
  absl::StatusOr<MigrationSet> set = Load(dir, &warnings);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->migrations().size(), 1u);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_THAT(warnings[0], HasSubstr("0001_a.sql: ignored"));
  EXPECT_THAT(warnings[1], HasSubstr("README.md: ignored"));
}

TEST(MigrationSetTest, VersionsMustBePositiveAndFit64Bits) {
  TempDir dir;
  dir.Write("0_zero.up.sql", "SELECT 1;\n");
  dir.Write("99999999999999999999_big.up.sql", "SELECT 1;\n");
  absl::StatusOr<MigrationSet> set = Load(dir);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(), HasSubstr("must be positive"));
  EXPECT_THAT(set.status().message(), HasSubstr("does not fit a 64-bit integer"));
}

TEST(MigrationSetTest, TimestampVersionsAndEmptyFilesLoad) {
  TempDir dir;
  dir.Write("20261124053000_init.up.sql", "-- nothing yet\n");
  absl::StatusOr<MigrationSet> set = Load(dir);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->Head(), 20261124053000);
  EXPECT_TRUE(set->migrations()[0].up.statements.empty());
}

TEST(MigrationSetTest, MissingDirectoryIsAClearError) {
  std::vector<std::string> warnings;
  absl::StatusOr<MigrationSet> set = MigrationSet::LoadDirectory("/nonexistent/dir", &warnings);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(), HasSubstr("/nonexistent/dir: cannot open"));
  EXPECT_THAT(set.status().message(), HasSubstr("--migrations-dir"));
}

TEST(MigrationSetTest, ParsesFileNames) {
  std::string digits, name;
  bool up = false;
  ASSERT_TRUE(ParseMigrationFileName("0002_1.7.0_schema.up.sql", &digits, &name, &up));
  EXPECT_EQ(digits, "0002");
  EXPECT_EQ(name, "1.7.0_schema");
  EXPECT_TRUE(up);
  ASSERT_TRUE(ParseMigrationFileName("12_x.down.sql", &digits, &name, &up));
  EXPECT_FALSE(up);
  EXPECT_FALSE(ParseMigrationFileName("12.up.sql", &digits, &name, &up));
  EXPECT_FALSE(ParseMigrationFileName("abc_x.up.sql", &digits, &name, &up));
  EXPECT_FALSE(ParseMigrationFileName("12_x.UP.sql", &digits, &name, &up));
  EXPECT_FALSE(ParseMigrationFileName("12_.up.sql", &digits, &name, &up));
}

TEST(MigrationSetTest, LoadFilesLoadsInMemoryAsLoadDirectoryLoadsDisk) {
  const std::map<std::string, std::string> files = {
      {"0001_users.up.sql", "CREATE TABLE users (id bigint);\r\n"},
      {"0001_users.down.sql", "DROP TABLE users;\n"},
      {"0002_index.up.sql",
       "-- schemagate:no-transaction\nCREATE INDEX CONCURRENTLY i ON users (id);\n"},
      {"README.md", "# notes\n"},
  };
  TempDir dir;
  for (const auto& [name, content] : files) dir.Write(name, content);
  std::vector<std::string> disk_warnings, memory_warnings;
  absl::StatusOr<MigrationSet> disk = MigrationSet::LoadDirectory(dir.path(), &disk_warnings);
  absl::StatusOr<MigrationSet> memory = MigrationSet::LoadFiles(dir.path(), files, &memory_warnings);
  ASSERT_TRUE(disk.ok()) << disk.status();
  ASSERT_TRUE(memory.ok()) << memory.status();
  EXPECT_EQ(memory->directory(), dir.path());
  EXPECT_EQ(memory_warnings, disk_warnings);
  ASSERT_EQ(memory->migrations().size(), 2u);
  ASSERT_EQ(disk->migrations().size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const Migration& m = memory->migrations()[i];
    const Migration& d = disk->migrations()[i];
    EXPECT_EQ(m.version, d.version);
    EXPECT_EQ(m.name, d.name);
    EXPECT_EQ(m.checksum, d.checksum);
    EXPECT_EQ(m.up.path, d.up.path);
    EXPECT_EQ(m.transactional(), d.transactional());
    EXPECT_EQ(m.down.has_value(), d.down.has_value());
    ASSERT_EQ(m.up.statements.size(), d.up.statements.size());
    EXPECT_EQ(m.up.statements[0].text, d.up.statements[0].text);
  }
  EXPECT_EQ(memory->migrations()[0].checksum, MigrationChecksum("CREATE TABLE users (id bigint);\n"));
}

TEST(MigrationSetTest, LoadFilesReportsProblemsWithTheirPaths) {
  std::vector<std::string> warnings;
  absl::StatusOr<MigrationSet> set = MigrationSet::LoadFiles(
      "mem", {{"1_a.up.sql", "SELECT 1;\n"}, {"01_b.up.sql", "SELECT 2;\n"},
              {"2_c.down.sql", "SELECT 3;\n"}, {"3_d.up.sql", "-- schemagate:fast\n"}},
      &warnings);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(), HasSubstr("mem/1_a.up.sql:1: duplicate version 1, also used by mem/01_b.up.sql"));
  EXPECT_THAT(set.status().message(), HasSubstr("mem/2_c.down.sql:1: down migration without an up"));
  EXPECT_THAT(set.status().message(), HasSubstr("mem/3_d.up.sql:1: unknown directive 'fast'"));
}

TEST(MigrationSetTest, TheProjectsOwnMigrationsLoad) {
  std::vector<std::string> warnings;
  absl::StatusOr<MigrationSet> set =
      MigrationSet::LoadDirectory(testing::SourcePath("migrations"), &warnings);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_GE(set->migrations().size(), 4u);
  bool has_no_transaction = false;
  for (const Migration& m : set->migrations()) {
    EXPECT_TRUE(m.down.has_value()) << m.Label() << " has no down";
    has_no_transaction |= !m.transactional();
  }
  EXPECT_TRUE(has_no_transaction);
}

}  // namespace
}  // namespace schemagate
