#include "coordinator/sql/lint.h"
#include "coordinator/engine/lint_policy.h"

#include <iostream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::TempDir;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// A finding of `rule` at `file`:`line` with `severity`.
::testing::Matcher<LintFinding> Finding(const std::string& file, int line, LintSeverity severity,
                                        const std::string& rule) {
  return AllOf(Field(&LintFinding::path, EndsWith(file)), Field(&LintFinding::line, line),
               Field(&LintFinding::severity, severity), Field(&LintFinding::rule, rule));
}

::testing::Matcher<LintFinding> Rule(const std::string& rule) {
  return Field(&LintFinding::rule, rule);
}

std::string Describe(const std::vector<LintFinding>& findings) {
  std::string out;
  for (const LintFinding& finding : findings) out += FormatFinding(finding) + "\n";
  return out;
}

// Loads the set in `dir` and lints all of it.
std::vector<LintFinding> LintDir(const TempDir& dir, const LintOptions& options = {}) {
  std::vector<std::string> warnings;
  absl::StatusOr<MigrationSet> set = MigrationSet::LoadDirectory(dir.path(), &warnings);
  EXPECT_TRUE(set.ok()) << set.status();
  if (!set.ok()) return {};
  return LintSet(*set, options);
}

// A set whose first migration creates the tables the others change, so they
// exist (and hold data) by the time the migration under test runs.
class LintTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.Write("0001_baseline.up.sql",
               "CREATE TABLE users (id bigint PRIMARY KEY, email text, name text);\n"
               "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint, total int);\n");
  }

  // Writes `sql` as 0002_change.up.sql and lints the set.
  std::vector<LintFinding> LintChange(const std::string& sql, const LintOptions& options = {}) {
    dir_.Write("0002_change.up.sql", sql);
    return LintDir(dir_, options);
  }

  static constexpr char kChange[] = "0002_change.up.sql";
  TempDir dir_;
};

TEST_F(LintTest, DropTableInANonBreakingMigrationIsAnError) {
  std::vector<LintFinding> findings =
      LintChange("-- Retire the old orders.\n\nDROP TABLE orders;\n");
  ASSERT_THAT(findings,
              ElementsAre(Finding(kChange, 3, LintSeverity::kError, "drop-table-not-breaking")))
      << Describe(findings);
  EXPECT_THAT(findings[0].message, HasSubstr("orders"));
  EXPECT_THAT(findings[0].fix, HasSubstr("-- schemagate:breaking"));
  EXPECT_THAT(findings[0].fix, HasSubstr("expand/contract"));
  EXPECT_TRUE(HasErrors(findings));
}

TEST_F(LintTest, DropColumnInANonBreakingMigrationIsAnError) {
  std::vector<LintFinding> findings = LintChange(
      "ALTER TABLE users ADD COLUMN nickname text;\n"
      "ALTER TABLE users\n    DROP COLUMN name;\n");
  ASSERT_THAT(findings,
              ElementsAre(Finding(kChange, 2, LintSeverity::kError, "drop-column-not-breaking")))
      << Describe(findings);
  EXPECT_THAT(findings[0].message, HasSubstr("name"));
  EXPECT_THAT(findings[0].fix, HasSubstr("-- schemagate:breaking"));
}

TEST_F(LintTest, RenamesInANonBreakingMigrationAreErrors) {
  std::vector<LintFinding> findings = LintChange(
      "ALTER TABLE users RENAME COLUMN name TO full_name;\n"
      "ALTER TABLE orders RENAME TO purchases;\n"
      "ALTER TABLE users RENAME email TO mail;\n");
  EXPECT_THAT(findings,
              ElementsAre(Finding(kChange, 1, LintSeverity::kError, "rename-column-not-breaking"),
                          Finding(kChange, 2, LintSeverity::kError, "rename-table-not-breaking"),
                          Finding(kChange, 3, LintSeverity::kError, "rename-column-not-breaking")))
      << Describe(findings);
}

TEST_F(LintTest, DropsAndRenamesInABreakingMigrationAreAllowed) {
  std::vector<LintFinding> findings = LintChange(
      "-- schemagate:breaking\n"
      "ALTER TABLE users DROP COLUMN name;\n"
      "ALTER TABLE users RENAME COLUMN email TO mail;\n"
      "ALTER TABLE orders RENAME TO purchases;\n"
      "DROP TABLE purchases;\n");
  // Renames pass, but are warned about: marking one breaking moves the
  // failure to the release that uses the new name (expand/contract instead).
  EXPECT_THAT(findings,
              ElementsAre(Finding(kChange, 3, LintSeverity::kWarning,
                                  "rename-column-marked-breaking"),
                          Finding(kChange, 4, LintSeverity::kWarning,
                                  "rename-table-marked-breaking")))
      << Describe(findings);
  EXPECT_FALSE(HasErrors(findings));
}

TEST_F(LintTest, ABreakingTableRenameThatKeepsTheOldNameAsAViewIsNotWarned) {
  std::vector<LintFinding> findings = LintChange(
      "-- schemagate:breaking\n"
      "ALTER TABLE orders RENAME TO purchases;\n"
      "CREATE VIEW orders AS SELECT * FROM purchases;\n");
  EXPECT_THAT(findings, IsEmpty()) << Describe(findings);
}

TEST_F(LintTest, ObjectsCreatedEarlierInTheSameMigrationMayBeDroppedAndRenamed) {
  std::vector<LintFinding> findings = LintChange(
      "CREATE TABLE staging (id bigint, raw text, extra text);\n"
      "ALTER TABLE staging DROP COLUMN extra;\n"
      "ALTER TABLE staging RENAME COLUMN raw TO payload;\n"
      "ALTER TABLE staging RENAME TO import_batches;\n"
      "CREATE INDEX import_batches_id_idx ON import_batches (id);\n"
      "ALTER TABLE import_batches ALTER COLUMN id SET NOT NULL;\n"
      "CREATE TABLE scratch AS SELECT 1 AS x;\n"
      "DROP TABLE import_batches, scratch;\n");
  EXPECT_THAT(findings, IsEmpty()) << Describe(findings);
}

TEST_F(LintTest, ATableCreatedByAnEarlierMigrationIsNotNew) {
  // A drop of a table created in the same file is fine, one created by the
  // previous migration is not: it has been applied and may hold data.
  dir_.Write("0002_temp.up.sql", "CREATE TABLE temp_import (id bigint);\n");
  dir_.Write("0003_cleanup.up.sql", "DROP TABLE temp_import;\n");
  std::vector<LintFinding> findings = LintDir(dir_);
  EXPECT_THAT(findings, ElementsAre(Finding("0003_cleanup.up.sql", 1, LintSeverity::kError,
                                            "drop-table-not-breaking")))
      << Describe(findings);
}

TEST_F(LintTest, ARenamedTableWithAViewUnderItsOldNameBreaksNoOne) {
  std::vector<LintFinding> findings = LintChange(
      "ALTER TABLE orders RENAME TO purchases;\n"
      "CREATE VIEW orders AS SELECT * FROM purchases;\n");
  EXPECT_THAT(findings, IsEmpty()) << Describe(findings);
}

TEST_F(LintTest, IndexWithoutConcurrentlyOnAnExistingTableIsAWarning) {
  std::vector<LintFinding> findings = LintChange(
      "CREATE TABLE coupons (code text);\n"
      "CREATE INDEX coupons_code_idx ON coupons (code);\n"
      "\n"
      "CREATE UNIQUE INDEX users_email_idx\n    ON users (email);\n");
  ASSERT_THAT(findings,
              ElementsAre(Finding(kChange, 4, LintSeverity::kWarning, "index-not-concurrent")))
      << Describe(findings);
  EXPECT_THAT(findings[0].message, HasSubstr("users"));
  EXPECT_THAT(findings[0].fix, HasSubstr("CREATE UNIQUE INDEX CONCURRENTLY users_email_idx"));
  EXPECT_THAT(findings[0].fix, HasSubstr("-- schemagate:no-transaction"));
  EXPECT_FALSE(HasErrors(findings));
}

TEST_F(LintTest, ConcurrentIndexIsFine) {
  std::vector<LintFinding> findings = LintChange(
      "-- schemagate:no-transaction\n"
      "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n"
      "DROP INDEX CONCURRENTLY users_email_idx;\n");
  EXPECT_THAT(findings, IsEmpty()) << Describe(findings);
}

TEST_F(LintTest, AddColumnNotNullWithoutDefaultIsAWarning) {
  std::vector<LintFinding> findings = LintChange(
      "ALTER TABLE orders ADD COLUMN currency text NOT NULL;\n"
      "ALTER TABLE orders ADD COLUMN status int NOT NULL DEFAULT 0;\n"
      "ALTER TABLE orders ADD COLUMN note text;\n"
      "ALTER TABLE orders ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;\n");
  ASSERT_THAT(findings, ElementsAre(Finding(kChange, 1, LintSeverity::kWarning,
                                            "add-column-not-null-without-default")))
      << Describe(findings);
  EXPECT_THAT(findings[0].message, HasSubstr("currency"));
  EXPECT_THAT(findings[0].fix, HasSubstr("NOT VALID"));
}

TEST_F(LintTest, AlterColumnTypeIsAWarning) {
  std::vector<LintFinding> findings =
      LintChange("ALTER TABLE orders ALTER COLUMN total TYPE bigint;\n");
  ASSERT_THAT(findings,
              ElementsAre(Finding(kChange, 1, LintSeverity::kWarning, "alter-column-type")))
      << Describe(findings);
  EXPECT_THAT(findings[0].message, HasSubstr("ACCESS EXCLUSIVE"));
}

TEST_F(LintTest, SetNotNullIsAWarningWithTheCheckConstraintRewrite) {
  std::vector<LintFinding> findings =
      LintChange("ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n");
  ASSERT_THAT(findings, ElementsAre(Finding(kChange, 1, LintSeverity::kWarning, "set-not-null")))
      << Describe(findings);
  EXPECT_THAT(findings[0].fix, HasSubstr("CHECK (email IS NOT NULL) NOT VALID"));
  EXPECT_THAT(findings[0].fix, HasSubstr("VALIDATE CONSTRAINT"));
}

TEST_F(LintTest, ForeignKeyWithoutNotValidIsAWarning) {
  std::vector<LintFinding> findings = LintChange(
      "ALTER TABLE orders ADD CONSTRAINT orders_user_fkey\n"
      "    FOREIGN KEY (user_id) REFERENCES users (id);\n"
      "ALTER TABLE orders ADD COLUMN referrer_id bigint REFERENCES users (id);\n");
  ASSERT_THAT(
      findings,
      ElementsAre(Finding(kChange, 1, LintSeverity::kWarning, "foreign-key-without-not-valid"),
                  Finding(kChange, 3, LintSeverity::kWarning, "foreign-key-without-not-valid")))
      << Describe(findings);
  EXPECT_THAT(findings[0].fix, HasSubstr("NOT VALID"));
  EXPECT_THAT(findings[0].fix, HasSubstr("VALIDATE CONSTRAINT orders_user_fkey"));
}

TEST_F(LintTest, ForeignKeyNotValidAndItsValidationAreFine) {
  dir_.Write("0002_fk.up.sql",
             "ALTER TABLE orders ADD CONSTRAINT orders_user_fkey\n"
             "    FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n");
  dir_.Write("0003_validate.up.sql", "ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fkey;\n");
  std::vector<LintFinding> findings = LintDir(dir_);
  EXPECT_THAT(findings, IsEmpty()) << Describe(findings);
}

TEST_F(LintTest, ForeignKeyInANewTableIsFine) {
  std::vector<LintFinding> findings = LintChange(
      "CREATE TABLE refunds (id bigint, order_id bigint REFERENCES orders (id));\n"
      "ALTER TABLE refunds ADD CONSTRAINT refunds_user_fkey\n"
      "    FOREIGN KEY (id) REFERENCES users (id);\n");
  EXPECT_THAT(findings, IsEmpty()) << Describe(findings);
}

TEST_F(LintTest, CheckWithoutNotValidIsAWarning) {
  std::vector<LintFinding> findings = LintChange(
      "ALTER TABLE orders ADD CONSTRAINT orders_total_check CHECK (total >= 0);\n"
      "ALTER TABLE orders ADD CONSTRAINT orders_id_check CHECK (id > 0) NOT VALID;\n");
  ASSERT_THAT(findings,
              ElementsAre(Finding(kChange, 1, LintSeverity::kWarning, "check-without-not-valid")))
      << Describe(findings);
}

TEST_F(LintTest, UniqueConstraintBuildingItsIndexIsAWarning) {
  std::vector<LintFinding> findings = LintChange(
      "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);\n"
      "ALTER TABLE users ADD CONSTRAINT users_name_key UNIQUE USING INDEX users_name_idx;\n");
  ASSERT_THAT(findings,
              ElementsAre(Finding(kChange, 1, LintSeverity::kWarning, "constraint-builds-index")))
      << Describe(findings);
  EXPECT_THAT(findings[0].fix, HasSubstr("USING INDEX"));
}

TEST_F(LintTest, AccessExclusiveWithoutLockTimeoutIsOneWarningPerFile) {
  std::vector<LintFinding> findings = LintChange(
      "-- schemagate:lock-timeout=0\n"
      "ALTER TABLE users ADD COLUMN nickname text;\n"
      "TRUNCATE orders;\n"
      "LOCK TABLE users;\n"
      "REINDEX TABLE users;\n"
      "CLUSTER users USING users_pkey;\n"
      "DROP INDEX users_email_idx;\n");
  // One directive fixes them all, so one finding, at the first statement,
  // naming the others.
  EXPECT_THAT(findings, ElementsAre(Finding(kChange, 2, LintSeverity::kWarning,
                                            "access-exclusive-without-lock-timeout")))
      << Describe(findings);
  ASSERT_FALSE(findings.empty());
  EXPECT_THAT(findings[0].message, HasSubstr("ALTER TABLE users takes an ACCESS EXCLUSIVE lock"));
  EXPECT_THAT(findings[0].message, HasSubstr("lock-timeout=0"));
  EXPECT_THAT(findings[0].message, HasSubstr("and so do 5 more statement(s) of this file"));
  for (const char* other : {"line 3: TRUNCATE on orders", "line 4: LOCK TABLE",
                            "line 5: REINDEX users", "line 6: CLUSTER users",
                            "line 7: DROP INDEX users_email_idx"}) {
    EXPECT_THAT(findings[0].message, HasSubstr(other));
  }
  EXPECT_THAT(findings[0].fix, HasSubstr("-- schemagate:lock-timeout=5s"));
  // Another file gets its own.
  dir_.Write("0003_more.up.sql", "-- schemagate:lock-timeout=0\nTRUNCATE orders;\n");
  findings = LintDir(dir_);
  EXPECT_THAT(findings, ElementsAre(Finding(kChange, 2, LintSeverity::kWarning,
                                            "access-exclusive-without-lock-timeout"),
                                    Finding("0003_more.up.sql", 2, LintSeverity::kWarning,
                                            "access-exclusive-without-lock-timeout")))
      << Describe(findings);
}

TEST_F(LintTest, AccessExclusiveWarnsWhenTheDefaultLockTimeoutIsZero) {
  LintOptions no_default;
  no_default.default_lock_timeout = absl::ZeroDuration();
  std::vector<LintFinding> findings = LintChange(
      "-- schemagate:no-transaction\n"
      "VACUUM FULL orders;\n"
      "ALTER TABLE users ADD COLUMN nickname text;\n",
      no_default);
  EXPECT_THAT(findings, ElementsAre(Finding(kChange, 2, LintSeverity::kWarning,
                                            "access-exclusive-without-lock-timeout")))
      << Describe(findings);
  ASSERT_FALSE(findings.empty());
  EXPECT_THAT(findings[0].message, HasSubstr("--lock-timeout is 0"));
  EXPECT_THAT(findings[0].message, HasSubstr("line 3: ALTER TABLE users"));
}

TEST_F(LintTest, AccessExclusiveWithALockTimeoutIsFine) {
  LintOptions no_default;
  no_default.default_lock_timeout = absl::ZeroDuration();
  // The migration's own directive wins over the default.
  std::vector<LintFinding> findings = LintChange(
      "-- schemagate:lock-timeout=3s\n"
      "ALTER TABLE users ADD COLUMN nickname text;\n"
      "TRUNCATE orders;\n",
      no_default);
  EXPECT_THAT(findings, IsEmpty()) << Describe(findings);
  // And the default applies when the migration sets none.
  findings = LintChange("ALTER TABLE users ADD COLUMN nickname text;\nTRUNCATE orders;\n");
  EXPECT_THAT(findings, IsEmpty()) << Describe(findings);
}

TEST_F(LintTest, WeakerLocksAndNewTablesNeedNoLockTimeout) {
  std::vector<LintFinding> findings = LintChange(
      "-- schemagate:lock-timeout=0\n"
      "CREATE TABLE coupons (code text);\n"
      "ALTER TABLE coupons ADD COLUMN value int;\n"
      "TRUNCATE coupons;\n"
      "ALTER TABLE orders VALIDATE CONSTRAINT orders_pkey;\n"
      "ALTER TABLE orders ALTER COLUMN total SET STATISTICS 500;\n"
      "ALTER TABLE orders SET (fillfactor = 90);\n"
      "LOCK TABLE users IN SHARE MODE;\n"
      "LOCK TABLE users IN ACCESS EXCLUSIVE MODE NOWAIT;\n");
  EXPECT_THAT(findings, IsEmpty()) << Describe(findings);
}

TEST_F(LintTest, OneStatementCanBreakSeveralRules) {
  std::vector<LintFinding> findings = LintChange(
      "-- schemagate:lock-timeout=0s\n"
      "ALTER TABLE users DROP COLUMN name, ALTER COLUMN email SET NOT NULL;\n");
  EXPECT_THAT(findings,
              ElementsAre(Finding(kChange, 2, LintSeverity::kError, "drop-column-not-breaking"),
                          Finding(kChange, 2, LintSeverity::kWarning, "set-not-null"),
                          Finding(kChange, 2, LintSeverity::kWarning,
                                  "access-exclusive-without-lock-timeout")))
      << Describe(findings);
}

TEST_F(LintTest, CommentOnlyAndEmptyMigrationsAreWarnings) {
  std::vector<LintFinding> findings =
      LintChange("-- SELECT 1; was never written\n\n/* nor this */\n");
  EXPECT_THAT(findings, ElementsAre(Finding(kChange, 1, LintSeverity::kWarning, "empty-migration")))
      << Describe(findings);
  ASSERT_FALSE(findings.empty());
  EXPECT_THAT(findings[0].fix, HasSubstr("lint-ignore=empty-migration"));
  findings = LintChange("");
  EXPECT_THAT(findings, ElementsAre(Finding(kChange, 1, LintSeverity::kWarning, "empty-migration")))
      << Describe(findings);
  EXPECT_THAT(LintChange("-- a note\nSELECT 1;\n"), IsEmpty());
}

TEST_F(LintTest, UpdateOrDeleteOfAWholeExistingTableIsAWarningWithTheBatchedRewrite) {
  std::vector<LintFinding> findings = LintChange(
      "UPDATE users SET name = lower(name);\n"
      "DELETE FROM public.orders;\n"
      "UPDATE users SET name = '' WHERE name IS NULL;\n"
      "DELETE FROM orders WHERE total = 0;\n"
      "CREATE TABLE scratch (id int);\n"
      "UPDATE scratch SET id = 0;\n"
      "DELETE FROM scratch;\n");
  EXPECT_THAT(findings,
              ElementsAre(Finding(kChange, 1, LintSeverity::kWarning, "update-without-where"),
                          Finding(kChange, 2, LintSeverity::kWarning, "delete-without-where")))
      << Describe(findings);
  ASSERT_EQ(findings.size(), 2u);
  EXPECT_THAT(findings[0].message, HasSubstr("UPDATE users SET ... without WHERE"));
  EXPECT_THAT(findings[0].fix, HasSubstr("-- schemagate:no-transaction"));
  EXPECT_THAT(findings[0].fix,
              HasSubstr("UPDATE users SET ... WHERE id IN (SELECT id FROM users WHERE <not yet "
                        "updated> LIMIT 5000); EXIT WHEN NOT FOUND; COMMIT;"));
  EXPECT_THAT(findings[1].message, HasSubstr("DELETE FROM public.orders without WHERE"));
  EXPECT_THAT(findings[1].fix, HasSubstr("DELETE FROM public.orders WHERE id IN"));
}

TEST_F(LintTest, SetFindingsComeInVersionOrder) {
  dir_.Write("0010_late.up.sql", "DROP TABLE users;\n");
  dir_.Write("0003_early.up.sql", "SELECT 1;\nALTER TABLE orders DROP COLUMN total;\n");
  std::vector<LintFinding> findings = LintDir(dir_);
  EXPECT_THAT(
      findings,
      ElementsAre(Finding("0003_early.up.sql", 2, LintSeverity::kError, "drop-column-not-breaking"),
                  Finding("0010_late.up.sql", 1, LintSeverity::kError, "drop-table-not-breaking")))
      << Describe(findings);
}

TEST(LintFormatTest, FormatsLikeACompilerDiagnostic) {
  LintFinding finding;
  finding.path = "migrations/0002_x.up.sql";
  finding.line = 7;
  finding.severity = LintSeverity::kError;
  finding.rule = "drop-column-not-breaking";
  finding.message = "it breaks running instances";
  finding.fix = "mark it breaking";
  EXPECT_EQ(FormatFinding(finding),
            "migrations/0002_x.up.sql:7: error: it breaks running instances "
            "[drop-column-not-breaking]\n    fix: mark it breaking");
  finding.severity = LintSeverity::kWarning;
  EXPECT_THAT(FormatFinding(finding), HasSubstr(":7: warning: "));
  finding.waived = "at or below --lint-from 9";
  EXPECT_THAT(FormatFinding(finding),
              HasSubstr(":7: warning (waived: at or below --lint-from 9): it breaks"));
  EXPECT_FALSE(HasErrors({finding}));
  EXPECT_FALSE(HasErrors({}));
}

// The loader refuses these; a Migration built by hand can still carry them,
// and lint must report or ignore them, never crash.
TEST(LintRobustnessTest, UnparsableAndTransactionIncompatibleStatementsDoNotCrash) {
  Migration migration;
  migration.version = 1;
  migration.name = "hand_made";
  migration.up.path = "0001_hand_made.up.sql";
  migration.up.statements = {
      {"CREATE TABLE (id int)", 1, "", false},
      {"CREATE INDEX CONCURRENTLY t_id ON t (id)", 2, "CREATE INDEX CONCURRENTLY", false},
      {"", 3, "", false},
      {"BEGIN", 4, "", true},
      {"ALTER TABLE", 5, "", false},
  };
  std::vector<LintFinding> findings = LintMigration(migration.up, LintOptions());
  EXPECT_THAT(
      findings,
      ElementsAre(
          Finding("0001_hand_made.up.sql", 1, LintSeverity::kError, "unparsable-statement"),
          Finding("0001_hand_made.up.sql", 5, LintSeverity::kError, "unparsable-statement")))
      << Describe(findings);
}

TEST(LintProjectTest, TheProjectsOwnMigrationsHaveNoErrors) {
  std::vector<std::string> warnings;
  absl::StatusOr<MigrationSet> set =
      MigrationSet::LoadDirectory(testing::SourcePath("migrations"), &warnings);
  ASSERT_TRUE(set.ok()) << set.status();
  for (const absl::Duration default_lock_timeout : {absl::Seconds(5), absl::ZeroDuration()}) {
    LintOptions options;
    options.default_lock_timeout = default_lock_timeout;
    std::vector<LintFinding> findings = LintSet(*set, options);
    EXPECT_FALSE(HasErrors(findings)) << Describe(findings);
    // The baseline and 0002 index only tables they create themselves.
    EXPECT_THAT(findings, Not(Contains(Rule("index-not-concurrent")))) << Describe(findings);
    std::cout << "lint of migrations/ with --lock-timeout="
              << absl::FormatDuration(default_lock_timeout) << ": " << findings.size()
              << " finding(s)\n"
              << Describe(findings);
  }
}

}  // namespace
}  // namespace schemagate
