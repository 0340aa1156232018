// LoadLintedSet: which lint findings refuse a set at load (schemagated and
// schemagatectl lint), and the two waivers for sets older than schemagate.
#include "coordinator/engine/lint_policy.h"

#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::TempDir;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::EndsWith;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// A set whose migrations 2 and 3 each break old instances without the
// breaking marker, and whose 4 only warns.
class LintPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.Write("0001_users.up.sql", "CREATE TABLE users (id bigint PRIMARY KEY, nick text);\n");
    dir_.Write("0002_rename.up.sql", "-- 2019\nALTER TABLE users RENAME COLUMN nick TO name;\n");
    dir_.Write("0003_drop.up.sql", "ALTER TABLE users DROP COLUMN name;\n");
    dir_.Write("0004_index.up.sql", "CREATE INDEX users_id ON users (id);\n");
  }

  absl::StatusOr<MigrationSet> Load(const LintPolicy& policy) {
    warnings_.clear();
    findings_.clear();
    return LoadLintedSet(dir_.path(), SetFormat::kAuto, policy, &warnings_, &findings_);
  }
  std::string Warnings() const { return absl::StrJoin(warnings_, "\n"); }

  TempDir dir_;
  std::vector<std::string> warnings_;
  std::vector<LintFinding> findings_;
};

TEST_F(LintPolicyTest, RefusesTheSetListingEveryErrorWithFileLineAndFix) {
  absl::StatusOr<MigrationSet> set = Load(LintPolicy());
  ASSERT_FALSE(set.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(set.status()));
  const std::string message(set.status().message());
  EXPECT_THAT(message, HasSubstr("has 2 lint errors"));
  EXPECT_THAT(message, HasSubstr("0002_rename.up.sql:2: error: ALTER TABLE users RENAME COLUMN "
                                 "nick TO name"));
  EXPECT_THAT(message, HasSubstr("[rename-column-not-breaking]\n    fix: expand/contract"));
  EXPECT_THAT(message, HasSubstr("0003_drop.up.sql:1: error:"));
  EXPECT_THAT(message, HasSubstr("[drop-column-not-breaking]"));
  // How to get past it, for a set older than schemagate.
  EXPECT_THAT(message, HasSubstr("--lint-from VERSION"));
  EXPECT_THAT(message, HasSubstr("-- schemagate:lint-ignore=RULE reason: WHY"));
  // The warning is not among the refusals, but reported.
  EXPECT_THAT(message, Not(HasSubstr("index-not-concurrent")));
  EXPECT_THAT(Warnings(), HasSubstr("0004_index.up.sql:1: warning:"));
  // The caller still sees every finding.
  EXPECT_EQ(findings_.size(), 3u);
}

TEST_F(LintPolicyTest, LintFromWaivesFindingsAtOrBelowItAndNoneAbove) {
  LintPolicy policy;
  policy.lint_from = 2;
  absl::StatusOr<MigrationSet> set = Load(policy);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(), HasSubstr("has 1 lint error"));
  EXPECT_THAT(set.status().message(), HasSubstr("0003_drop.up.sql:1: error:"));
  EXPECT_THAT(set.status().message(), Not(HasSubstr("0002_rename")));
  EXPECT_THAT(Warnings(),
              HasSubstr("0002_rename.up.sql:2: error (waived: at or below --lint-from 2): "));

  policy.lint_from = 3;
  set = Load(policy);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->Head(), 4);
  EXPECT_THAT(Warnings(), HasSubstr("0003_drop.up.sql:1: error (waived: at or below --lint-from 3)"));
  EXPECT_THAT(Warnings(), HasSubstr("0004_index.up.sql:1: warning: "));
  EXPECT_THAT(findings_, Contains(AllOf(Field(&LintFinding::rule, "rename-column-not-breaking"),
                                        Field(&LintFinding::waived, "at or below --lint-from 3"))));
  for (const LintFinding& f : findings_) EXPECT_FALSE(Refuses(f, policy)) << FormatFinding(f);
}

TEST_F(LintPolicyTest, LintIgnoreWaivesItsRulesInItsFileOnly) {
  dir_.Write("0002_rename.up.sql",
             "-- schemagate:lint-ignore=rename-column-not-breaking reason: applied in 2019, "
             "before schemagate\n"
             "ALTER TABLE users RENAME COLUMN nick TO name;\n"
             "ALTER TABLE users DROP COLUMN id;\n");
  dir_.Write("0003_drop.up.sql",
             "-- schemagate:lint-ignore=drop-column-not-breaking,index-not-concurrent "
             "reason: the column was never read\n"
             "ALTER TABLE users DROP COLUMN name;\n");
  absl::StatusOr<MigrationSet> set = Load(LintPolicy());
  ASSERT_FALSE(set.ok());
  // The file's other rule still counts.
  EXPECT_THAT(set.status().message(), HasSubstr("has 1 lint error"));
  EXPECT_THAT(set.status().message(), HasSubstr("0002_rename.up.sql:3: error:"));
  EXPECT_THAT(set.status().message(), HasSubstr("[drop-column-not-breaking]"));
  EXPECT_THAT(Warnings(), HasSubstr("0002_rename.up.sql:2: error (waived: lint-ignore: applied "
                                    "in 2019, before schemagate): "));
  EXPECT_THAT(Warnings(), HasSubstr("0003_drop.up.sql:2: error (waived: lint-ignore: the column "
                                    "was never read)"));
  // A rule the file never breaks is stale.
  EXPECT_THAT(Warnings(), HasSubstr("0003_drop.up.sql: lint-ignore=index-not-concurrent matches "
                                    "no finding of this file"));

  dir_.Write("0002_rename.up.sql",
             "-- schemagate:lint-ignore=rename-column-not-breaking reason: applied in 2019\n"
             "ALTER TABLE users RENAME COLUMN nick TO name;\n");
  set = Load(LintPolicy());
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->Find(2)->up.directives.lint_ignore.at("rename-column-not-breaking"),
            "applied in 2019");
}

TEST_F(LintPolicyTest, WarnModeReportsErrorsWithoutRefusing) {
  LintPolicy policy;
  policy.mode = LintMode::kWarn;
  absl::StatusOr<MigrationSet> set = Load(policy);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_THAT(Warnings(), HasSubstr("0002_rename.up.sql:2: error: "));
  EXPECT_THAT(Warnings(), HasSubstr("0003_drop.up.sql:1: error: "));
}

TEST_F(LintPolicyTest, LintFromAboveTheHeadIsWarned) {
  LintPolicy policy;
  policy.lint_from = 20230101000000;
  ASSERT_TRUE(Load(policy).ok());
  EXPECT_THAT(Warnings(), HasSubstr("--lint-from 20230101000000 is above the set's head 4"));
  policy.lint_from = 4;
  ASSERT_TRUE(Load(policy).ok());
  EXPECT_THAT(Warnings(), Not(HasSubstr("above the set's head")));
}

TEST_F(LintPolicyTest, LoaderErrorsComeFirstAndUnchanged) {
  dir_.Write("0005_bad.up.sql", "-- SCHEMAGATE:BREAKING\nSELECT 1;\n");
  dir_.Write("README.md", "notes\n");
  absl::StatusOr<MigrationSet> set = Load(LintPolicy());
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(), HasSubstr("0005_bad.up.sql:1: "));
  EXPECT_THAT(set.status().message(), Not(HasSubstr("lint error")));
  EXPECT_THAT(findings_, IsEmpty());
  EXPECT_THAT(warnings_, Contains(EndsWith("README.md: ignored (not VERSION_name.up.sql or "
                                           "VERSION_name.down.sql)")));
}

TEST_F(LintPolicyTest, TheProjectsOwnMigrationsLoadUnderTheDefaultPolicy) {
  std::vector<std::string> warnings;
  absl::StatusOr<MigrationSet> set =
      LoadLintedSet(testing::SourcePath("migrations"), SetFormat::kAuto, LintPolicy(), &warnings);
  EXPECT_TRUE(set.ok()) << set.status();
}

}  // namespace
}  // namespace schemagate
