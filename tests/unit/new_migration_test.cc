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

TEST(NewMigrationTest, NeverOverwritesAndWarnsWhenBelowTheHead) {
  TempDir dir;
  dir.Write("20991231000000_future.up.sql", "SELECT 1;\n");
  NewMigrationOptions options;
  options.directory = dir.path();
  options.name = "x";
  options.now = At("2026-11-24T05:30:07Z");
  absl::StatusOr<NewMigrationFiles> first = CreateMigrationFiles(options);
  ASSERT_TRUE(first.ok());
  EXPECT_THAT(first->warning, HasSubstr("sorts before it"));
  absl::StatusOr<NewMigrationFiles> again = CreateMigrationFiles(options);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
}

TEST(NewMigrationTest, RefusesEmptyNamesAndMissingDirectories) {
  NewMigrationOptions options;
  options.directory = "/nonexistent";
  options.name = "x";
  EXPECT_EQ(CreateMigrationFiles(options).status().code(), absl::StatusCode::kInvalidArgument);
  TempDir dir;
  options.directory = dir.path();
  options.name = "???";
  EXPECT_EQ(CreateMigrationFiles(options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace schemagate
