#include "coordinator/sql/sql_split.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace schemagate {
namespace {

using ::testing::HasSubstr;

TEST(SqlSplitTest, SplitsOnStatementsNotOnSemicolonsInBodiesStringsOrComments) {
  const char* sql =
      "-- leading comment; not a statement\n"
      "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\n"
      "BEGIN\n"
      "  PERFORM 1; RETURN 2;\n"
      "END;\n"
      "$body$;\n"
      "/* block; comment */\n"
      "INSERT INTO t VALUES ('a;b', $$x;y$$);\n"
      "SELECT 1";
  absl::StatusOr<std::vector<SqlStatement>> statements = SplitSql(sql);
  ASSERT_TRUE(statements.ok()) << statements.status();
  ASSERT_EQ(statements->size(), 3u);
  EXPECT_EQ((*statements)[0].line, 2);
  EXPECT_THAT((*statements)[0].text, HasSubstr("PERFORM 1; RETURN 2;"));
  EXPECT_EQ((*statements)[0].text.back(), '$');
  EXPECT_EQ((*statements)[1].line, 8);
  EXPECT_EQ((*statements)[1].text, "INSERT INTO t VALUES ('a;b', $$x;y$$)");
  EXPECT_EQ((*statements)[2].text, "SELECT 1");
  EXPECT_EQ((*statements)[2].line, 9);
}

TEST(SqlSplitTest, ALineCommentEndsAtACarriageReturnAsInPostgres) {
  // Found by sql_text_fuzzer in CI: "--" ran to the next \n only, so SQL
  // after a lone \r (which ends the comment for PostgreSQL) was taken as
  // comment and the statement's text started in the wrong place.
  absl::StatusOr<std::vector<SqlStatement>> statements =
      SplitSql("-- note\rSELECT 1; -- trailing;\nSELECT 2;\n");
  ASSERT_TRUE(statements.ok()) << statements.status();
  ASSERT_EQ(statements->size(), 2u);
  EXPECT_EQ((*statements)[0].text, "SELECT 1");
  EXPECT_EQ((*statements)[1].text, "SELECT 2");
}

TEST(SqlSplitTest, NestedBlockCommentsAreSkippedWhole) {
  // Found by sql_text_fuzzer: the leading comment ended at the first "*/",
  // so the statement's text began inside the comment and, run on its own,
  // executed the commented-out DROP.
  absl::StatusOr<std::vector<SqlStatement>> statements = SplitSql(
      "/* old version, kept for reference:\n"
      "   /* drop it */ ; DROP TABLE users; -- */\n"
      "CREATE TABLE t (id int);\n");
  ASSERT_TRUE(statements.ok()) << statements.status();
  ASSERT_EQ(statements->size(), 1u);
  EXPECT_EQ((*statements)[0].text, "CREATE TABLE t (id int)");
  EXPECT_EQ((*statements)[0].line, 3);
}

TEST(SqlSplitTest, RefusesANulByteInsteadOfStoppingThere) {
  // libpg_query reads a C string: without the check the DROP would vanish.
  absl::StatusOr<std::vector<SqlStatement>> statements =
      SplitSql(std::string("SELECT 1;\n\0DROP TABLE users;\n", 29));
  ASSERT_FALSE(statements.ok());
  EXPECT_EQ(statements.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(statements.status().message(), HasSubstr("line 2: NUL byte"));
}

TEST(SqlSplitTest, RefusesInvalidUtf8AsAnArgumentError) {
  // Found by sql_text_fuzzer: the parse tree's protobuf strings did not
  // decode, which came back as an INTERNAL error.
  absl::StatusOr<std::vector<SqlStatement>> statements = SplitSql("SELECT 1;\nSELECT 'caf\xe9';\n");
  ASSERT_FALSE(statements.ok());
  EXPECT_EQ(statements.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(statements.status().message(), HasSubstr("line 2: not valid UTF-8"));
}

TEST(SqlSplitTest, FindsInvalidUtf8) {
  EXPECT_EQ(FindInvalidUtf8("caf\xc3\xa9 \xe2\x9c\x93"), absl::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("ab\xe9"), 2u);
  EXPECT_EQ(FindInvalidUtf8("\xc0\xaf"), 0u);          // Overlong '/'.
  EXPECT_EQ(FindInvalidUtf8("x\xed\xa0\x80"), 1u);     // A surrogate.
  EXPECT_EQ(FindInvalidUtf8("\xe2\x82"), 0u);          // Cut short.
}

TEST(SqlSplitTest, ReportsTheLineOfAParseError) {
  absl::StatusOr<std::vector<SqlStatement>> statements =
      SplitSql("SELECT 1;\n\nSELEC 2;\n");
  ASSERT_FALSE(statements.ok());
  EXPECT_EQ(statements.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(statements.status().message(), HasSubstr("line 3: syntax error"));
}

TEST(SqlSplitTest, UnterminatedDollarQuoteIsAnError) {
  EXPECT_FALSE(SplitSql("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1;\n").ok());
}

TEST(SqlSplitTest, FlagsStatementsThatCannotRunInATransaction) {
  absl::StatusOr<std::vector<SqlStatement>> statements = SplitSql(
      "CREATE INDEX CONCURRENTLY a ON t (x);\n"
      "CREATE INDEX b ON t (x);\n"
      "DROP INDEX CONCURRENTLY a;\n"
      "REINDEX (CONCURRENTLY) INDEX b;\n"
      "REINDEX INDEX CONCURRENTLY b;\n"
      "VACUUM t;\n"
      "ANALYZE t;\n");
  ASSERT_TRUE(statements.ok()) << statements.status();
  ASSERT_EQ(statements->size(), 7u);
  EXPECT_EQ((*statements)[0].needs_no_transaction, "CREATE INDEX CONCURRENTLY");
  EXPECT_EQ((*statements)[1].needs_no_transaction, "");
  EXPECT_EQ((*statements)[2].needs_no_transaction, "DROP INDEX CONCURRENTLY");
  EXPECT_EQ((*statements)[3].needs_no_transaction, "REINDEX CONCURRENTLY");
  EXPECT_EQ((*statements)[4].needs_no_transaction, "REINDEX CONCURRENTLY");
  EXPECT_EQ((*statements)[5].needs_no_transaction, "VACUUM");
  EXPECT_EQ((*statements)[6].needs_no_transaction, "");
}

TEST(SqlSplitTest, FlagsTransactionControl) {
  absl::StatusOr<std::vector<SqlStatement>> statements =
      SplitSql("BEGIN; SELECT 1; SAVEPOINT s; COMMIT;");
  ASSERT_TRUE(statements.ok());
  ASSERT_EQ(statements->size(), 4u);
  EXPECT_TRUE((*statements)[0].is_transaction_control);
  EXPECT_FALSE((*statements)[1].is_transaction_control);
  EXPECT_TRUE((*statements)[2].is_transaction_control);
  EXPECT_TRUE((*statements)[3].is_transaction_control);
}

TEST(SqlSplitTest, CommentsOnlyGiveNoStatements) {
  absl::StatusOr<std::vector<SqlStatement>> statements = SplitSql("-- nothing\n/* here */\n");
  ASSERT_TRUE(statements.ok());
  EXPECT_TRUE(statements->empty());
}

TEST(SqlSplitTest, LineOfOffsetCountsNewlines) {
  EXPECT_EQ(LineOfOffset("a\nb\nc", 0), 1);
  EXPECT_EQ(LineOfOffset("a\nb\nc", 2), 2);
  EXPECT_EQ(LineOfOffset("a\nb\nc", 4), 3);
}

TEST(SqlSplitTest, DescribesTheIndexAndTableOfACreateIndex) {
  IndexStatement s = DescribeIndexStatement(
      "CREATE UNIQUE INDEX CONCURRENTLY \"Big_V\" ON app.big USING btree (v) WHERE v > 0");
  EXPECT_EQ(s.kind, IndexStatement::Kind::kCreate);
  EXPECT_EQ(s.schema, "app");
  EXPECT_EQ(s.table, "big");
  EXPECT_EQ(s.index, "Big_V");
  EXPECT_TRUE(s.concurrently);
  EXPECT_FALSE(s.if_exists);

  s = DescribeIndexStatement("create index if not exists big_v on big (v)");
  EXPECT_EQ(s.kind, IndexStatement::Kind::kCreate);
  EXPECT_EQ(s.schema, "");
  EXPECT_EQ(s.table, "big");
  EXPECT_TRUE(s.if_exists);
  EXPECT_FALSE(s.concurrently);
}

TEST(SqlSplitTest, DescribesTheIndexOfADropIndex) {
  IndexStatement s = DescribeIndexStatement("DROP INDEX CONCURRENTLY app.big_v");
  EXPECT_EQ(s.kind, IndexStatement::Kind::kDrop);
  EXPECT_EQ(s.schema, "app");
  EXPECT_EQ(s.index, "big_v");
  EXPECT_EQ(s.table, "");
  EXPECT_TRUE(s.concurrently);
  EXPECT_FALSE(s.if_exists);

  s = DescribeIndexStatement("DROP INDEX CONCURRENTLY IF EXISTS big_v");
  EXPECT_EQ(s.kind, IndexStatement::Kind::kDrop);
  EXPECT_EQ(s.schema, "");
  EXPECT_TRUE(s.if_exists);
}

TEST(SqlSplitTest, OtherStatementsDescribeAsOther) {
  for (const char* sql :
       {"CREATE INDEX CONCURRENTLY ON big (v)",  // no name: PostgreSQL picks one
        "DROP INDEX a, b", "DROP TABLE big", "REINDEX INDEX CONCURRENTLY big_v",
        "CREATE INDEX a ON t (x); CREATE INDEX b ON t (y)", "CREATE INDEX ON", "SELECT 1"}) {
    EXPECT_EQ(DescribeIndexStatement(sql).kind, IndexStatement::Kind::kOther) << sql;
  }
}

}  // namespace
}  // namespace schemagate
