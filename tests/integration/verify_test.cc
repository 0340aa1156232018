// schemagatectl verify's engine and the schema description against a real
// PostgreSQL: a down must undo its up, SQL errors name file:line and
// SQLSTATE, and the description is deterministic yet sees every change a
// migration can make.
#include <algorithm>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/postgres/catalog.h"
#include "ctl/verify.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

class VerifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    db_ = std::make_unique<TestDatabase>();
  }

  static MigrationSet Load(const std::string& dir) {
    std::vector<std::string> warnings;
    absl::StatusOr<MigrationSet> set = MigrationSet::LoadDirectory(dir, &warnings);
    EXPECT_TRUE(set.ok()) << set.status();
    return set.ok() ? std::move(*set) : MigrationSet();
  }

  absl::StatusOr<VerifyReport> Verify(const MigrationSet& set,
                                      const VerifyOptions& options = VerifyOptions()) {
    progress_.clear();
    return VerifyMigrations(set, db_->url(), options,
                            [&](const std::string& line) { progress_.push_back(line); });
  }

  SchemaDescription Describe(const std::string& bookkeeping = "schemagate") {
    absl::StatusOr<SchemaDescription> d = DescribeSchema(db_->url(), bookkeeping);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *d : SchemaDescription();
  }

  std::unique_ptr<TestDatabase> db_;
  TempDir dir_;
  std::vector<std::string> progress_;
};

TEST_F(VerifyTest, TheProjectsOwnMigrationsVerify) {
  const MigrationSet set = Load(testing::SourcePath("migrations"));
  ASSERT_EQ(set.migrations().size(), 5u);
  absl::StatusOr<VerifyReport> report = Verify(set);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << FormatVerifyReport(*report);
  EXPECT_EQ(report->first_failure, 0);
  EXPECT_TRUE(report->stopped.empty());
  ASSERT_EQ(report->migrations.size(), 5u);
  for (const MigrationVerdict& v : report->migrations) {
    EXPECT_TRUE(v.ran) << v.label;
    EXPECT_TRUE(v.up_ok) << v.label;
    EXPECT_TRUE(v.up_changes_schema) << v.label;
    EXPECT_EQ(v.down, DownCheck::kUndoes) << v.label << "\n" << v.down_diff_text;
    EXPECT_FALSE(v.reapply_differs) << v.label << "\n" << v.reapply_diff_text;
    EXPECT_FALSE(v.error.has_value()) << v.error->ToString();
  }
  EXPECT_FALSE(report->migrations[2].transactional);  // 0003: CONCURRENTLY

  // The scratch database ends with the whole set applied, indexes valid,
  // constraints validated, and no bookkeeping written.
  EXPECT_EQ(db_->Query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "5");
  EXPECT_EQ(db_->Query("SELECT indisvalid FROM pg_index "
                       "WHERE indexrelid = 'public.documents_sha256_idx'::regclass"),
            "t");
  EXPECT_EQ(db_->Query("SELECT convalidated FROM pg_constraint "
                       "WHERE conname = 'analyses_requested_by_fkey'"),
            "t");
  EXPECT_EQ(db_->Query("SELECT count(*) FROM pg_namespace WHERE nspname = 'schemagate'"), "0");
  EXPECT_EQ(report->final_schema.fingerprint, Describe().fingerprint);

  const std::string text = FormatVerifyReport(*report);
  EXPECT_THAT(text, HasSubstr("document_tags_and_language"));
  EXPECT_THAT(text, HasSubstr("5 migrations, 0 failed, 0 without a down"));
  EXPECT_THAT(progress_, Contains(HasSubstr("3_add_lookup_indexes: down undoes up")));
}

TEST_F(VerifyTest, CatchesADownThatDoesNotUndoItsUp) {
  dir_.Write("0001_items.up.sql", "CREATE TABLE items (id bigint PRIMARY KEY, sku text);\n");
  dir_.Write("0001_items.down.sql", "DROP TABLE items;\n");
  // The down drops the column but forgets the index (which is not on that
  // column, so dropping the column does not take it along).
  dir_.Write("2_items_note.up.sql",
             "ALTER TABLE items ADD COLUMN note text;\n"
             "CREATE INDEX IF NOT EXISTS items_sku_idx ON items (sku);\n");
  dir_.Write("2_items_note.down.sql", "ALTER TABLE items DROP COLUMN note;\n");
  dir_.Write("0003_orders.up.sql", "CREATE TABLE orders (id bigint PRIMARY KEY);\n");
  dir_.Write("0003_orders.down.sql", "DROP TABLE orders;\n");
  dir_.Write("0004_no_down.up.sql", "ALTER TABLE orders ADD COLUMN total numeric;\n");
  const MigrationSet set = Load(dir_.path());

  absl::StatusOr<VerifyReport> report = Verify(set);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->ok());
  EXPECT_EQ(report->first_failure, 2);
  ASSERT_EQ(report->migrations.size(), 4u);
  EXPECT_EQ(report->migrations[0].down, DownCheck::kUndoes);

  const MigrationVerdict& bad = report->migrations[1];
  EXPECT_EQ(bad.label, "2_items_note");
  EXPECT_TRUE(bad.up_ok);
  EXPECT_EQ(bad.down, DownCheck::kDiffers);
  EXPECT_TRUE(bad.failed());
  EXPECT_FALSE(bad.error.has_value());
  // The index is left behind: present after the down, absent before the up.
  EXPECT_THAT(bad.down_diff.added,
              ElementsAre("table public.items index items_sku_idx: CREATE INDEX items_sku_idx "
                          "ON public.items USING btree (sku)"));
  EXPECT_THAT(bad.down_diff.removed, IsEmpty());
  EXPECT_THAT(bad.down_diff_text, HasSubstr("--- before 2_items_note up\n"
                                            "+++ after 2_items_note down\n"
                                            "+table public.items index items_sku_idx: "));
  // IF NOT EXISTS lets the up run again, so the later migrations are checked.
  EXPECT_FALSE(bad.reapply_differs);
  EXPECT_TRUE(report->stopped.empty());
  EXPECT_EQ(report->migrations[2].down, DownCheck::kUndoes);
  EXPECT_EQ(report->migrations[3].down, DownCheck::kNoDown);
  EXPECT_FALSE(report->migrations[3].failed());  // no down: a warning only
  EXPECT_EQ(report->NoDownCount(), 1);
  EXPECT_EQ(db_->Query("SELECT count(*) FROM information_schema.columns "
                       "WHERE table_name = 'orders' AND column_name = 'total'"),
            "1");

  const std::string text = FormatVerifyReport(*report);
  EXPECT_THAT(text, HasSubstr("2_items_note:\n  the down does not undo the up:\n    --- before"));
  EXPECT_THAT(text, HasSubstr("\n    +table public.items index items_sku_idx"));
  EXPECT_THAT(text, HasSubstr("4 migrations, 1 failed, 1 without a down; failed: "
                              "2_items_note"));
}

TEST_F(VerifyTest, EveryFaultyDownIsReportedAndTheMigrationsAfterOneAreStillVerified) {
  const std::string public_before =
      db_->Query("SELECT nspowner::regrole::text || ' ' || nspacl::text || ' ' || "
                 "obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = 'public'");
  // The down forgets the table: the up cannot run again (42P07).
  dir_.Write("0001_items.up.sql",
             "CREATE TABLE items (id bigint PRIMARY KEY, sku text);\n"
             "CREATE INDEX items_sku_idx ON items (sku);\n");
  dir_.Write("0001_items.down.sql", "DROP INDEX items_sku_idx;\n");
  dir_.Write("0002_audit.up.sql",
             "CREATE SCHEMA audit;\nCREATE TABLE audit.log (id int, item bigint REFERENCES "
             "items);\n");
  dir_.Write("0002_audit.down.sql", "DROP SCHEMA audit CASCADE;\n");
  // Again: the down leaves the type behind.
  dir_.Write("0003_mood.up.sql",
             "CREATE TYPE mood AS ENUM ('ok', 'meh');\nALTER TABLE items ADD COLUMN m mood;\n");
  dir_.Write("0003_mood.down.sql", "ALTER TABLE items DROP COLUMN m;\n");
  dir_.Write("0004_more.up.sql", "CREATE TABLE more (id int);\n");
  dir_.Write("0004_more.down.sql", "DROP TABLE more;\n");
  const MigrationSet set = Load(dir_.path());
  absl::StatusOr<VerifyReport> report = Verify(set);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->migrations.size(), 4u);
  const MigrationVerdict& items = report->migrations[0];
  EXPECT_EQ(items.down, DownCheck::kDiffers);
  EXPECT_THAT(items.down_diff.added, Contains(HasSubstr("table public.items column sku: text")));
  ASSERT_TRUE(items.error.has_value());
  EXPECT_EQ(items.error->step, "up again");
  EXPECT_EQ(items.error->sqlstate, "42P07");  // duplicate_table: items exists
  EXPECT_TRUE(items.rebuilt);
  EXPECT_EQ(report->first_failure, 1);
  // Verified on the schema 0001's up gives, not on what its down left.
  EXPECT_EQ(report->migrations[1].down, DownCheck::kUndoes);
  const MigrationVerdict& mood = report->migrations[2];
  EXPECT_TRUE(mood.failed());
  EXPECT_EQ(mood.down, DownCheck::kDiffers);
  EXPECT_TRUE(mood.rebuilt);
  EXPECT_EQ(report->migrations[3].down, DownCheck::kUndoes);
  EXPECT_TRUE(report->stopped.empty()) << report->stopped;
  EXPECT_FALSE(report->ok());
  // The database ends with the whole set applied, and public as it was.
  EXPECT_EQ(db_->Query("SELECT count(*) FROM pg_tables WHERE tablename IN ('items', 'log', "
                       "'more')"),
            "3");
  EXPECT_EQ(report->final_schema.fingerprint, Describe().fingerprint);
  EXPECT_EQ(db_->Query("SELECT nspowner::regrole::text || ' ' || nspacl::text || ' ' || "
                       "obj_description(oid, 'pg_namespace') FROM pg_namespace "
                       "WHERE nspname = 'public'"),
            public_before);
  const std::string text = FormatVerifyReport(*report);
  EXPECT_THAT(text, HasSubstr("4 migrations, 2 failed, 0 without a down; failed: 1_items, "
                              "3_mood"));
  EXPECT_THAT(text, HasSubstr("the scratch database was rebuilt"));
  EXPECT_THAT(progress_, Contains(HasSubstr("1_items: rebuilt the scratch database")));
}

TEST_F(VerifyTest, AFaultyDownStopsTheRunOnADatabaseVerifyMayNotRebuild) {
  db_->Exec("CREATE TABLE precious (id int)");
  dir_.Write("0001_items.up.sql",
             "CREATE TABLE items (id bigint PRIMARY KEY, sku text);\n"
             "CREATE INDEX items_sku_idx ON items (sku);\n");
  dir_.Write("0001_items.down.sql", "DROP INDEX items_sku_idx;\n");
  dir_.Write("0002_more.up.sql", "CREATE TABLE more (id int);\n");
  const MigrationSet set = Load(dir_.path());
  VerifyOptions options;
  options.allow_non_empty = true;
  absl::StatusOr<VerifyReport> report = Verify(set, options);
  ASSERT_TRUE(report.ok()) << report.status();
  const MigrationVerdict& v = report->migrations[0];
  ASSERT_TRUE(v.error.has_value());
  EXPECT_EQ(v.error->step, "up again");
  EXPECT_FALSE(v.rebuilt);
  EXPECT_THAT(report->stopped, AllOf(HasSubstr("1_items"), HasSubstr("--allow-non-empty")));
  EXPECT_FALSE(report->migrations[1].ran);
  EXPECT_EQ(db_->Query("SELECT to_regclass('public.precious')::text"), "precious");
}

TEST_F(VerifyTest, AnSqlErrorNamesFileLineAndSqlstate) {
  dir_.Write("0001_items.up.sql", "CREATE TABLE items (id bigint PRIMARY KEY);\n");
  dir_.Write("0001_items.down.sql", "DROP TABLE items;\n");
  const std::string bad = dir_.Write("0002_broken.up.sql",
                                     "-- a comment line\n"
                                     "ALTER TABLE items ADD COLUMN sku text;\n"
                                     "\n"
                                     "CREATE INDEX items_price_idx\n"
                                     "    ON items (price);\n");
  dir_.Write("0002_broken.down.sql", "ALTER TABLE items DROP COLUMN sku;\n");
  dir_.Write("0003_later.up.sql", "CREATE TABLE later (id int);\n");
  const MigrationSet set = Load(dir_.path());

  absl::StatusOr<VerifyReport> report = Verify(set);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->first_failure, 2);
  const MigrationVerdict& v = report->migrations[1];
  EXPECT_FALSE(v.up_ok);
  EXPECT_EQ(v.down, DownCheck::kNotRun);
  ASSERT_TRUE(v.error.has_value());
  EXPECT_EQ(v.error->path, bad);
  EXPECT_EQ(v.error->line, 4);
  EXPECT_EQ(v.error->statement_index, 2);
  EXPECT_EQ(v.error->sqlstate, "42703");  // undefined_column
  EXPECT_THAT(v.error->ToString(),
              AllOf(HasSubstr(absl::StrCat(bad, ":4: ")), HasSubstr("\"price\""),
                    HasSubstr("SQLSTATE 42703")));
  EXPECT_FALSE(report->migrations[2].ran);
  EXPECT_THAT(FormatVerifyReport(*report), HasSubstr(absl::StrCat(bad, ":4: ")));
  // The transactional up was rolled back as a whole: no sku column.
  EXPECT_EQ(db_->Query("SELECT count(*) FROM information_schema.columns "
                       "WHERE table_name = 'items' AND column_name = 'sku'"),
            "0");
}

TEST_F(VerifyTest, ANoTransactionUpFailsStatementByStatement) {
  dir_.Write("0001_items.up.sql", "CREATE TABLE items (id bigint PRIMARY KEY, sku text);\n");
  dir_.Write("0002_index.up.sql",
             "-- schemagate:no-transaction\n"
             "CREATE INDEX CONCURRENTLY items_sku_idx ON items (sku);\n"
             "CREATE INDEX CONCURRENTLY items_bad_idx ON items (nope);\n");
  const MigrationSet set = Load(dir_.path());
  absl::StatusOr<VerifyReport> report = Verify(set);
  ASSERT_TRUE(report.ok()) << report.status();
  const MigrationVerdict& v = report->migrations[1];
  ASSERT_TRUE(v.error.has_value());
  EXPECT_EQ(v.error->line, 3);
  EXPECT_EQ(v.error->sqlstate, "42703");
  // Autocommit: the first statement stays applied.
  EXPECT_EQ(db_->Query("SELECT count(*) FROM pg_class WHERE relname = 'items_sku_idx'"), "1");
}

TEST_F(VerifyTest, RefusesADatabaseThatIsNotEmpty) {
  testing::WriteTrivialMigrations(dir_, 1, 2);
  const MigrationSet set = Load(dir_.path());
  db_->Exec("CREATE TABLE precious (id int)");
  absl::StatusOr<VerifyReport> report = Verify(set);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(),
              AllOf(HasSubstr("not a scratch database"), HasSubstr("public.precious"),
                    HasSubstr("pass --allow-non-empty")));
  EXPECT_EQ(db_->Query("SELECT count(*) FROM pg_tables WHERE tablename LIKE 't_'"), "0");

  VerifyOptions options;
  options.allow_non_empty = true;
  report = Verify(set, options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << FormatVerifyReport(*report);
}

TEST_F(VerifyTest, RefusesAManagedDatabaseAndNeverTouchesBookkeeping) {
  testing::WriteTrivialMigrations(dir_, 1, 2);
  const MigrationSet set = Load(dir_.path());
  db_->Exec("CREATE SCHEMA schemagate; CREATE TABLE schemagate.migrations (version bigint)");
  absl::StatusOr<VerifyReport> report = Verify(set);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(),
              AllOf(HasSubstr("bookkeeping"), HasSubstr("pass --allow-non-empty")));

  VerifyOptions options;
  options.allow_non_empty = true;
  report = Verify(set, options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << FormatVerifyReport(*report);
  EXPECT_EQ(db_->Query("SELECT count(*) FROM schemagate.migrations"), "0");
  EXPECT_THAT(report->final_schema.lines, Not(Contains(HasSubstr("schemagate"))));
}

TEST_F(VerifyTest, UnreachableDatabaseIsUnavailable) {
  const MigrationSet set = Load(testing::SourcePath("migrations"));
  absl::StatusOr<VerifyReport> report = VerifyMigrations(
      set, absl::StrCat("postgres://postgres@127.0.0.1:", testing::FreePort(), "/none"), nullptr);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kUnavailable);
}

// --- DescribeSchema -------------------------------------------------------

class DescribeSchemaTest : public VerifyTest {
 protected:
  void ApplyOwnMigrations(const TestDatabase& db) {
    absl::StatusOr<VerifyReport> report =
        VerifyMigrations(Load(testing::SourcePath("migrations")), db.url(), nullptr);
    ASSERT_TRUE(report.ok()) << report.status();
    ASSERT_TRUE(report->ok()) << FormatVerifyReport(*report);
  }

  // Fingerprint after `sql`, described over one long-lived connection: a
  // SchemaDescriber must see every change made since its last call.
  std::string FingerprintAfter(SchemaDescriber* describer, const std::string& sql) {
    db_->Exec(sql);
    absl::StatusOr<SchemaDescription> d = describer->Describe();
    EXPECT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d.ok() ? d->text : "", Describe().text) << "a fresh connection sees the same";
    return d.ok() ? d->fingerprint : "";
  }
};

TEST_F(DescribeSchemaTest, IsDeterministicAndIndependentOfOids) {
  ApplyOwnMigrations(*db_);
  const SchemaDescription first = Describe();
  const SchemaDescription second = Describe();
  EXPECT_EQ(first.text, second.text);
  EXPECT_EQ(first.fingerprint, second.fingerprint);
  EXPECT_EQ(first.fingerprint.size(), 64u);
  // Each table heads its parts.
  const auto table = std::find(first.lines.begin(), first.lines.end(), "table public.users");
  const auto column = std::find(first.lines.begin(), first.lines.end(),
                                "table public.users column email: text not null");
  EXPECT_LT(table, column);
  EXPECT_EQ(first, MakeSchemaDescription(std::vector<std::string>(first.lines.rbegin(),
                                                                  first.lines.rend())));
  EXPECT_TRUE(absl::StartsWith(first.text, kSchemaDescriptionHeader));

  // Another database, its OIDs shifted by objects created and dropped first.
  TestDatabase other;
  other.Exec("CREATE TABLE filler (id int, t text); CREATE TYPE filler_e AS ENUM ('x');"
             "DROP TABLE filler; DROP TYPE filler_e;");
  ApplyOwnMigrations(other);
  absl::StatusOr<SchemaDescription> described = DescribeSchema(other.url());
  ASSERT_TRUE(described.ok()) << described.status();
  EXPECT_EQ(described->text, first.text);

  // What the baseline looks like, line by line.
  const std::vector<std::string>& lines = first.lines;
  EXPECT_THAT(lines, Contains("schema public"));
  EXPECT_THAT(lines, Contains("table public.users"));
  EXPECT_THAT(lines, Contains("table public.users column email: text not null"));
  EXPECT_THAT(lines, Contains("table public.users column role: text not null default "
                              "'member'::text"));
  EXPECT_THAT(lines, Contains("table public.users column id: bigint not null generated by "
                              "default as identity"));
  EXPECT_THAT(lines, Contains("sequence public.users_id_seq: as bigint start 1 increment 1 "
                              "minvalue 1 maxvalue 9223372036854775807 cache 1 identity of "
                              "public.users.id"));
  EXPECT_THAT(lines, Contains("table public.documents constraint documents_owner_id_fkey: "
                              "FOREIGN KEY (owner_id) REFERENCES public.users(id) ON DELETE "
                              "CASCADE"));
  EXPECT_THAT(lines, Contains("table public.users index users_email_lower_key: CREATE UNIQUE "
                              "INDEX users_email_lower_key ON public.users USING btree "
                              "(lower(email))"));
  EXPECT_THAT(lines, Contains("table public.users trigger users_set_updated_at: CREATE "
                              "TRIGGER users_set_updated_at BEFORE UPDATE ON public.users FOR "
                              "EACH ROW EXECUTE FUNCTION public.set_updated_at()"));
  EXPECT_THAT(lines, Contains(HasSubstr("function public.set_updated_at(): CREATE OR REPLACE "
                                        "FUNCTION public.set_updated_at()\\n RETURNS trigger")));
  EXPECT_THAT(lines, Contains(HasSubstr("extension plpgsql: version ")));
  for (const std::string& line : lines) EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST_F(DescribeSchemaTest, IgnoresTheBookkeepingSchema) {
  db_->Exec("CREATE TABLE t (id int)");
  const std::string before = Describe().fingerprint;
  db_->Exec("CREATE SCHEMA schemagate; CREATE TABLE schemagate.migrations (version bigint);"
            "CREATE INDEX ON schemagate.migrations (version);"
            "CREATE FUNCTION schemagate.f() RETURNS int LANGUAGE sql AS 'SELECT 1'");
  EXPECT_EQ(Describe().fingerprint, before);
  // Under another bookkeeping name, that schema is user schema.
  const SchemaDescription other = Describe("sg_other");
  EXPECT_NE(other.fingerprint, before);
  EXPECT_THAT(other.lines, Contains("table schemagate.migrations column version: bigint"));
}

TEST_F(DescribeSchemaTest, ColumnOrderDoesNotMatter) {
  db_->Exec("CREATE TABLE t (a int, b text)");
  TestDatabase other;
  other.Exec("CREATE TABLE t (b text, a int)");
  absl::StatusOr<SchemaDescription> described = DescribeSchema(other.url());
  ASSERT_TRUE(described.ok());
  EXPECT_EQ(described->fingerprint, Describe().fingerprint);
}

TEST_F(DescribeSchemaTest, SeesEveryKindOfChange) {
  db_->Exec("CREATE TABLE t (id int PRIMARY KEY, a int, b text)");
  SchemaDescriber describer(db_->url());
  std::vector<std::string> seen = {describer.Describe()->fingerprint};
  const std::vector<std::string> changes = {
      "ALTER TABLE t ADD COLUMN c int",
      "ALTER TABLE t ALTER COLUMN c SET DEFAULT 1",
      "ALTER TABLE t ALTER COLUMN c SET DEFAULT 2",
      "ALTER TABLE t ALTER COLUMN c SET NOT NULL",
      "ALTER TABLE t ALTER COLUMN b TYPE varchar(20)",
      "CREATE INDEX t_a_idx ON t (a)",
      "DROP INDEX t_a_idx; CREATE INDEX t_a_idx ON t (a) WHERE a > 0",
      "ALTER TABLE t ADD CONSTRAINT t_a_check CHECK (a > 0) NOT VALID",
      "ALTER TABLE t VALIDATE CONSTRAINT t_a_check",
      "COMMENT ON COLUMN t.a IS 'the a'",
      "CREATE VIEW v AS SELECT id, a FROM t",
      "CREATE OR REPLACE VIEW v AS SELECT id, a FROM t WHERE a > 1",
      "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 1'",
      "CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 2'",
      "CREATE TYPE mood AS ENUM ('sad', 'ok')",
      "ALTER TYPE mood ADD VALUE 'happy'",
      "CREATE DOMAIN pos AS int CHECK (VALUE > 0)",
      "CREATE SEQUENCE s",
      "ALTER SEQUENCE s INCREMENT 5",
      "CREATE TRIGGER t_noop BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION "
      "suppress_redundant_updates_trigger()",
      "ALTER TABLE t DISABLE TRIGGER t_noop",
      "CREATE MATERIALIZED VIEW mv AS SELECT count(*) AS n FROM t",
      "CREATE SCHEMA extra",
      "CREATE TABLE extra.p (k int, v text) PARTITION BY RANGE (k)",
      "CREATE TABLE extra.p1 PARTITION OF extra.p FOR VALUES FROM (0) TO (10)",
      "ALTER TABLE t ENABLE ROW LEVEL SECURITY",
      "CREATE POLICY t_own ON t USING (a > 0)",
      "CREATE TYPE pair AS (x int, y int)",
      "CREATE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'",
      "CREATE AGGREGATE summed(int) (sfunc = int4pl, stype = int, initcond = '0')",
      "CREATE STATISTICS t_stats ON a, b FROM t",
      "CREATE RULE t_no_delete AS ON DELETE TO t DO INSTEAD NOTHING",
      "CREATE EXTENSION IF NOT EXISTS pgcrypto",
      "CREATE TYPE floatrange AS RANGE (subtype = float8, subtype_diff = float8mi)",
      "CREATE UNLOGGED TABLE scratchpad (k text COLLATE \"C\", g int GENERATED ALWAYS AS "
      "(length(k)) STORED) WITH (fillfactor = 70)",
  };
  for (const std::string& sql : changes) {
    const std::string now = FingerprintAfter(&describer, sql);
    EXPECT_THAT(seen, Not(Contains(now))) << "no change seen after: " << sql;
    seen.push_back(now);
  }
  const SchemaDescription d = Describe();
  EXPECT_THAT(d.lines, Contains("table public.t constraint t_a_check: CHECK ((a > 0))"));
  EXPECT_THAT(d.lines, Contains("type public.mood: enum ('sad', 'ok', 'happy')"));
  EXPECT_THAT(d.lines, Contains("type public.pos: domain integer"));
  EXPECT_THAT(d.lines, Contains("type public.pair: composite (x integer, y integer)"));
  EXPECT_THAT(d.lines, Contains("table extra.p: partition by RANGE (k)"));
  EXPECT_THAT(d.lines, Contains("table extra.p1: partition of extra.p FOR VALUES FROM (0) TO "
                                "(10)"));
  EXPECT_THAT(d.lines, Contains(HasSubstr("table public.t trigger t_noop: ")));
  EXPECT_THAT(d.lines, Contains(AllOf(HasSubstr("trigger t_noop"), HasSubstr("[disabled]"))));
  EXPECT_THAT(d.lines, Contains("table public.t: row level security"));
  EXPECT_THAT(d.lines, Contains("table public.scratchpad: unlogged with (fillfactor=70)"));
  EXPECT_THAT(d.lines, Contains("table public.scratchpad column g: integer generated always "
                                "as (length(k)) stored"));
  EXPECT_THAT(d.lines, Contains("table public.scratchpad column k: text collate "
                                "pg_catalog.\"C\""));
  EXPECT_THAT(d.lines, Contains("type public.floatrange: range of double precision opclass "
                                "pg_catalog.float8_ops subdiff float8mi"));
  EXPECT_THAT(d.lines, Contains("view public.v: SELECT t.id,\\n    t.a\\n   FROM public.t\\n"
                                "  WHERE t.a > 1;"));
  // The range type's own constructors are part of the type, not functions.
  EXPECT_THAT(d.text, Not(HasSubstr("function public.floatrange(")));
  EXPECT_THAT(d.lines, Contains("table public.t column a comment: the a"));
  EXPECT_THAT(d.lines, Contains(HasSubstr("extension pgcrypto: version ")));
  // Members of an extension are left to the extension line.
  EXPECT_THAT(d.text, Not(HasSubstr("gen_salt")));
}

TEST_F(DescribeSchemaTest, NotValidAndInvalidAreVisible) {
  db_->Exec("CREATE TABLE t (id int PRIMARY KEY, a int)");
  db_->Exec("ALTER TABLE t ADD CONSTRAINT t_a_check CHECK (a > 0) NOT VALID");
  EXPECT_THAT(Describe().lines,
              Contains("table public.t constraint t_a_check: CHECK ((a > 0)) NOT VALID"));
  // A failed CREATE INDEX CONCURRENTLY leaves an invalid index behind.
  db_->Exec("INSERT INTO t VALUES (1, 5), (2, 5)");
  try {
    pqxx::connection conn(db_->url());
    pqxx::nontransaction(conn).exec("CREATE UNIQUE INDEX CONCURRENTLY t_a_key ON t (a)");
    ADD_FAILURE() << "the unique index should fail on duplicates";
  } catch (const pqxx::sql_error&) {
  }
  EXPECT_THAT(Describe().lines,
              Contains("table public.t index t_a_key: CREATE UNIQUE INDEX t_a_key ON public.t "
                       "USING btree (a) [invalid]"));
}

TEST(SchemaDiffTest, DiffListsRemovedAndAddedLinesInOrder) {
  const SchemaDescription before =
      MakeSchemaDescription({"table public.t", "table public.t column a: integer"});
  const SchemaDescription after = MakeSchemaDescription(
      {"table public.t column a: bigint", "table public.t", "table public.t index i: X"});
  const SchemaDiff diff = DiffSchemas(before, after);
  EXPECT_THAT(diff.removed, ElementsAre("table public.t column a: integer"));
  EXPECT_THAT(diff.added,
              ElementsAre("table public.t column a: bigint", "table public.t index i: X"));
  EXPECT_EQ(FormatSchemaDiff(diff, "before", "after"),
            "--- before\n+++ after\n"
            "-table public.t column a: integer\n"
            "+table public.t column a: bigint\n"
            "+table public.t index i: X\n");
  EXPECT_EQ(FormatSchemaDiff(diff, "a", "b", 1), "--- a\n+++ b\n"
                                                  "-table public.t column a: integer\n"
                                                  "... and 2 more lines\n");
  EXPECT_TRUE(DiffSchemas(before, before).empty());
  EXPECT_EQ(before, MakeSchemaDescription({"table public.t column a: integer", "table public.t"}));
}

TEST(SchemaDiffTest, ALongChangedLineIsCutAroundTheChange) {
  const std::string body(1000, 'x');
  const SchemaDiff diff =
      DiffSchemas(MakeSchemaDescription({"function public.f(): " + body + "OLD"}),
                  MakeSchemaDescription({"function public.f(): " + body + "NEW"}));
  const std::string text = FormatSchemaDiff(diff, "a", "b", 10, 200);
  EXPECT_THAT(text, HasSubstr("-function public.f(): ..."));
  EXPECT_THAT(text, HasSubstr("xOLD"));
  EXPECT_THAT(text, HasSubstr("xNEW"));
}

}  // namespace
TEST(SchemaDescriptionTest, TextReadsBackToTheSameDescription) {
  const SchemaDescription original = MakeSchemaDescription(
      {"table public.t column a: integer", "table public.t", "function public.f(): x\\ny"});
  const SchemaDescription read = ParseSchemaDescription(original.text);
  EXPECT_EQ(read.fingerprint, original.fingerprint);
  EXPECT_EQ(read.lines, original.lines);
  const SchemaDiff diff =
      DiffSchemas(read, MakeSchemaDescription({"table public.t", "table public.u"}));
  EXPECT_THAT(DescribeDrift(diff, "r-1"),
              ::testing::HasSubstr("2 line(s) gone or changed, 1 new or changed"));
  EXPECT_THAT(DescribeDrift(diff, "r-1"), ::testing::HasSubstr("first: function public.f()"));
}

}  // namespace schemagate
