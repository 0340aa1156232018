#include "ctl/new_migration.h"

#include <vector>

#include "coordinator/engine/migration_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::TempDir;
using ::testing::HasSubstr;

absl::Time At(const char* text) {
  absl::Time t;
  std::string error;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, text, &t, &error)) << error;
  return t;
}

TEST(NewMigrationTest, SanitizesNames) {
  EXPECT_EQ(SanitizeMigrationName("Add users.email Index!"), "add_users_email_index");
  EXPECT_EQ(SanitizeMigrationName("  --x--  "), "x");
  EXPECT_EQ(SanitizeMigrationName("!!!"), "");
}

TEST(NewMigrationTest, WritesAPairThatTheLoaderAccepts) {
  TempDir dir;
  NewMigrationOptions options;
  options.directory = dir.path();
  options.name = "Add email index";
  options.no_transaction = true;
  options.now = At("2026-11-24T05:30:07Z");
  absl::StatusOr<NewMigrationFiles> files = CreateMigrationFiles(options);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ(files->version, 20261124053007);
  EXPECT_THAT(files->up_path, HasSubstr("/20261124053007_add_email_index.up.sql"));
  EXPECT_THAT(files->down_path, HasSubstr("/20261124053007_add_email_index.down.sql"));
  std::vector<std::string> warnings;
  absl::StatusOr<MigrationSet> set = MigrationSet::LoadDirectory(dir.path(), &warnings);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->migrations().size(), 1u);
  EXPECT_FALSE(set->migrations()[0].transactional());
  EXPECT_TRUE(set->migrations()[0].down.has_value());
}

TEST(NewMigrationTest, WarnsWhenBelowTheHead) {
  TempDir dir;
  dir.Write("20991231000000_future.up.sql", "SELECT 1;\n");
  NewMigrationOptions options;
  options.directory = dir.path();
  options.name = "x";
  options.now = At("2026-11-24T05:30:07Z");
  absl::StatusOr<NewMigrationFiles> first = CreateMigrationFiles(options);
  ASSERT_TRUE(first.ok());
  EXPECT_THAT(first->warning, HasSubstr("sorts before it"));
}

TEST(NewMigrationTest, TwoInOneSecondTakeTheNextFreeSecond) {
  TempDir dir;
  // 05:30:08 is taken already (by a file of another name, even one that
  // does not load).
  dir.Write("20261124053008_other.up.sql", "NOT SQL AT ALL;\n");
  NewMigrationOptions options;
  options.directory = dir.path();
  options.name = "first";
  options.now = At("2026-11-24T05:30:07Z");
  absl::StatusOr<NewMigrationFiles> first = CreateMigrationFiles(options);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->version, 20261124053007);
  options.name = "second";
  absl::StatusOr<NewMigrationFiles> second = CreateMigrationFiles(options);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->version, 20261124053009);
  EXPECT_THAT(second->up_path, HasSubstr("/20261124053009_second.up.sql"));
  EXPECT_TRUE(second->warning.empty()) << second->warning;
  // Across a minute, the version stays a timestamp.
  options.now = At("2026-11-24T05:30:59Z");
  ASSERT_TRUE(CreateMigrationFiles(options).ok());
  absl::StatusOr<NewMigrationFiles> third = CreateMigrationFiles(options);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->version, 20261124053100);
}

TEST(NewMigrationTest, CreatesAMissingDirectory) {
  TempDir dir;
  NewMigrationOptions options;
  options.directory = dir.path() + "/db/migrations";
  options.name = "x";
  options.now = At("2026-11-24T05:30:07Z");
  absl::StatusOr<NewMigrationFiles> files = CreateMigrationFiles(options);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_TRUE(files->created_directory);
  std::vector<std::string> warnings;
  absl::StatusOr<MigrationSet> set = MigrationSet::LoadDirectory(options.directory, &warnings);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->Head(), 20261124053007);
  options.name = "y";
  files = CreateMigrationFiles(options);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_FALSE(files->created_directory);
}

TEST(NewMigrationTest, RefusesToAddAGolangMigratePairToAnotherFormatsSet) {
  TempDir dir;
  dir.Write("00001_users.sql", "-- +goose Up\nCREATE TABLE users (id int);\n");
  NewMigrationOptions options;
  options.directory = dir.path();
  options.name = "more";
  options.now = At("2026-11-24T05:30:07Z");
  absl::StatusOr<NewMigrationFiles> files = CreateMigrationFiles(options);
  ASSERT_FALSE(files.ok());
  EXPECT_THAT(std::string(files.status().message()),
              HasSubstr("holds a goose set and new writes golang-migrate's"));
  std::vector<std::string> warnings;
  EXPECT_TRUE(MigrationSet::LoadDirectory(dir.path(), &warnings).ok());
}

TEST(NewMigrationTest, RefusesEmptyNamesAndPathsThatCannotBeADirectory) {
  TempDir dir;
  dir.Write("a_file", "");
  NewMigrationOptions options;
  options.name = "x";
  options.directory = dir.path() + "/a_file";
  EXPECT_EQ(CreateMigrationFiles(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.directory = dir.path() + "/a_file/below";
  EXPECT_EQ(CreateMigrationFiles(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.directory = dir.path();
  options.name = "???";
  EXPECT_EQ(CreateMigrationFiles(options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace schemagate
