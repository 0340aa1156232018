// import-alembic's pure parts: the helper's output, what is kept of the SQL
// Alembic's offline mode renders, file names. The real Alembic runs in
// tests/e2e/alembic_test.cc.
#include "ctl/import_alembic.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace schemagate {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Field(const std::string& key, const std::string& value) {
  return absl::StrCat(key, " ", value.size(), "\n", value, "\n");
}

TEST(ImportAlembicTest, ParsesTheHelperOutputWithNewlinesInValues) {
  const std::string text = Field("REVISION", "a1") + Field("DOWN_REVISION", "") +
                           Field("PATH", "alembic/versions/a1.py") + Field("MESSAGE", "first") +
                           Field("UP", "BEGIN;\n\nCREATE TABLE t (x int);\n\nCOMMIT;\n") +
                           Field("DOWN_ERROR", "NotImplementedError") + Field("REVISION", "b2") +
                           Field("DOWN_REVISION", "a1") + Field("UP", "") + Field("DOWN", "x\n");
  absl::StatusOr<std::vector<AlembicRevision>> revisions = ParseAlembicHelperOutput(text);
  ASSERT_TRUE(revisions.ok()) << revisions.status();
  ASSERT_EQ(revisions->size(), 2u);
  EXPECT_EQ((*revisions)[0].revision, "a1");
  EXPECT_EQ((*revisions)[0].down_revision, "");
  EXPECT_EQ((*revisions)[0].up_sql, "BEGIN;\n\nCREATE TABLE t (x int);\n\nCOMMIT;\n");
  EXPECT_EQ((*revisions)[0].down_error, "NotImplementedError");
  EXPECT_EQ((*revisions)[1].down_revision, "a1");
  EXPECT_EQ((*revisions)[1].down_sql, "x\n");
}

TEST(ImportAlembicTest, AnErrorFieldIsARefusalAndACutOutputIsAnError) {
  absl::StatusOr<std::vector<AlembicRevision>> refused =
      ParseAlembicHelperOutput(Field("ERROR", "the history has 2 heads (a, b)"));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("2 heads"));
  EXPECT_EQ(ParseAlembicHelperOutput("REVISION 10\nabc").status().code(),
            absl::StatusCode::kInternal);
}

TEST(ImportAlembicTest, KeepsTheMigrationAndLeavesOutTransactionsAndTheVersionTable) {
  const std::string rendered = R"(BEGIN;

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> a1

CREATE TABLE plans (code TEXT PRIMARY KEY, title TEXT NOT NULL);

INSERT INTO plans (code, title) VALUES ('free', 'Free; no card'), ('pro', 'Pro''s -- monthly');

CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  UPDATE alembic_version SET version_num = 'x';

  RETURN 1;
END;
$$;

INSERT INTO alembic_version (version_num) VALUES ('a1') RETURNING alembic_version.version_num;

UPDATE "alembic_version" SET version_num='b2' WHERE alembic_version.version_num = 'a1';

DELETE FROM public.alembic_version WHERE alembic_version.version_num = 'a1';

DROP TABLE alembic_version;

COMMIT;
)";
  bool no_transaction = false;
  absl::StatusOr<std::string> sql =
      MigrationSqlFromAlembic(rendered, "alembic_version", &no_transaction);
  ASSERT_TRUE(sql.ok()) << sql.status();
  EXPECT_FALSE(no_transaction);
  EXPECT_THAT(*sql, HasSubstr("CREATE TABLE plans"));
  EXPECT_THAT(*sql, HasSubstr("'Free; no card'"));
  EXPECT_THAT(*sql, HasSubstr("UPDATE alembic_version SET version_num = 'x';\n\n  RETURN 1;"));
  EXPECT_THAT(*sql, Not(HasSubstr("BEGIN;\n")));
  EXPECT_THAT(*sql, Not(HasSubstr("COMMIT")));
  EXPECT_THAT(*sql, Not(HasSubstr("VALUES ('a1')")));
  EXPECT_THAT(*sql, Not(HasSubstr("'b2'")));
  EXPECT_THAT(*sql, Not(HasSubstr("DELETE FROM")));
  EXPECT_THAT(*sql, Not(HasSubstr("DROP TABLE")));
  EXPECT_THAT(*sql, Not(HasSubstr("CREATE TABLE alembic_version")));
}

TEST(ImportAlembicTest, AnAutocommitBlockMakesTheMigrationNonTransactional) {
  bool no_transaction = false;
  absl::StatusOr<std::string> sql = MigrationSqlFromAlembic(
      "BEGIN;\n\nALTER TABLE t ADD COLUMN c int;\n\nCOMMIT;\n\n"
      "CREATE INDEX CONCURRENTLY t_c ON t (c);\n\nBEGIN;\n\nCOMMIT;\n",
      "alembic_version", &no_transaction);
  ASSERT_TRUE(sql.ok()) << sql.status();
  EXPECT_TRUE(no_transaction);
  EXPECT_EQ(*sql, "ALTER TABLE t ADD COLUMN c int;\n\nCREATE INDEX CONCURRENTLY t_c ON t (c);\n\n");
}

TEST(ImportAlembicTest, AnotherVersionTableNameIsTheOneLeftOut) {
  bool no_transaction = false;
  absl::StatusOr<std::string> sql = MigrationSqlFromAlembic(
      "INSERT INTO alembic_version VALUES ('keep');\nINSERT INTO app_versions VALUES ('a1');\n",
      "app_versions", &no_transaction);
  ASSERT_TRUE(sql.ok()) << sql.status();
  EXPECT_EQ(*sql, "INSERT INTO alembic_version VALUES ('keep');\n\n");
}

TEST(ImportAlembicTest, SlugsComeFromTheMessage) {
  AlembicRevision r;
  r.revision = "1975ea83b712";
  r.message = "Add account.status enum (see #42)";
  EXPECT_EQ(AlembicSlug(r), "add_account_status_enum_see_42");
  r.message = std::string(80, 'x');
  EXPECT_EQ(AlembicSlug(r).size(), 48u);
  r.message = "!!!";
  EXPECT_EQ(AlembicSlug(r), "1975ea83b712");
}

}  // namespace
}  // namespace schemagate
