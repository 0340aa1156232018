// A set written for goose, dbmate or Flyway, unchanged: twelve migrations
// (one outside a transaction, one plpgsql function, a down for each) in the
// tool's own format, applied by schemagated to a fresh database; status is
// CURRENT, an agent given the same files and --format is READY, the last
// migration's down rolls back and applies again. For dbmate, when dbmate is
// installed, the schema it gives the same files is pg_dump-identical.
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::BinaryPath;
using ::schemagate::testing::CoordinatorProcess;
using ::schemagate::testing::RunBinary;
using ::schemagate::testing::SourcePath;
using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;
using ::testing::HasSubstr;

struct Step {
  std::string name, up, down;
  bool no_transaction = false;
  bool block = false;  // a plpgsql body: goose's StatementBegin/End around it
};

const std::vector<Step>& Steps() {
  static const std::vector<Step> steps = {
      {"users", "CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL);",
       "DROP TABLE users;"},
      {"orders",
       "CREATE TABLE orders (id bigserial PRIMARY KEY, user_id bigint REFERENCES users (id),\n"
       "    total numeric(12, 2) NOT NULL DEFAULT 0);",
       "DROP TABLE orders;"},
      {"users_name", "ALTER TABLE users ADD COLUMN name text;",
       "ALTER TABLE users DROP COLUMN name;"},
      {"users_email_index", "CREATE INDEX CONCURRENTLY users_email ON users (email);",
       "DROP INDEX CONCURRENTLY users_email;", true},
      {"touch_function",
       "CREATE FUNCTION touch_updated() RETURNS trigger AS $$\nBEGIN\n"
       "  NEW.updated_at := now();\n  RETURN NEW;\nEND;\n$$ LANGUAGE plpgsql;",
       "DROP FUNCTION touch_updated();", false, true},
      {"orders_updated_at", "ALTER TABLE orders ADD COLUMN updated_at timestamptz;",
       "ALTER TABLE orders DROP COLUMN updated_at;"},
      {"orders_trigger",
       "CREATE TRIGGER orders_touch BEFORE UPDATE ON orders\n"
       "    FOR EACH ROW EXECUTE FUNCTION touch_updated();",
       "DROP TRIGGER orders_touch ON orders;"},
      {"order_totals",
       "CREATE VIEW order_totals AS\n"
       "    SELECT user_id, sum(total) AS total FROM orders GROUP BY user_id;",
       "DROP VIEW order_totals;"},
      {"status_type", "CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped');",
       "DROP TYPE order_status;"},
      {"seed_users",
       "INSERT INTO users (email, name) VALUES ('ada@example.com', 'Ada'),\n"
       "    ('Download report', 'not a goose Down');",
       "DELETE FROM users WHERE email IN ('ada@example.com', 'Download report');"},
      {"audit", "CREATE TABLE audit (id bigserial PRIMARY KEY, at timestamptz DEFAULT now());",
       "DROP TABLE audit;"},
      {"tags",
       "CREATE TABLE tags (id bigserial PRIMARY KEY, label text UNIQUE);\n"
       "COMMENT ON TABLE tags IS 'labels';",
       "DROP TABLE tags;"},
  };
  return steps;
}

// Writes Steps() into `dir` as `format` lays them out; returns the stored
// version of each, in order.
std::vector<std::string> WriteSet(const TempDir& dir, const std::string& format) {
  std::vector<std::string> versions;
  int n = 0;
  for (const Step& step : Steps()) {
    ++n;
    if (format == "goose") {
      const std::string version = absl::StrCat(20240101000000 + n);
      auto section = [&](const std::string& sql) {
        return step.block
                   ? absl::StrCat("-- +goose StatementBegin\n", sql, "\n-- +goose StatementEnd\n")
                   : sql + "\n";
      };
      dir.Write(
          absl::StrCat(version, "_", step.name, ".sql"),
          absl::StrCat(step.no_transaction ? "-- +goose NO TRANSACTION\n" : "", "-- +goose Up\n",
                       section(step.up), "\n-- +goose Down\n", section(step.down)));
      versions.push_back(version);
    } else if (format == "dbmate") {
      const std::string version = absl::StrCat(20240201000000 + n);
      const char* option = step.no_transaction ? " transaction:false" : "";
      dir.Write(absl::StrCat(version, "_", step.name, ".sql"),
                absl::StrCat("-- migrate:up", option, "\n", step.up, "\n\n-- migrate:down", option,
                             "\n", step.down, "\n"));
      versions.push_back(version);
    } else {  // flyway: 1.1 .. 1.9, then 1.10 .. 1.12 (numeric, not text, order)
      const std::string version = absl::StrCat("1.", n);
      dir.Write(absl::StrCat("V", version, "__", step.name, ".sql"), step.up + "\n");
      dir.Write(absl::StrCat("U", version, "__", step.name, ".sql"), step.down + "\n");
      versions.push_back(absl::StrCat(1000000000000000 + n * int64_t{1000000000000}));
    }
  }
  return versions;
}

std::vector<std::string> Ctl(const std::string& coordinator, std::vector<std::string> args) {
  std::vector<std::string> argv = {BinaryPath("schemagatectl")};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--coordinator", coordinator});
  return argv;
}

// pg_dump of `url`'s schema, without `exclude` and pg_dump's random
// \restrict lines.
std::string SchemaDump(const std::string& url, const std::vector<std::string>& exclude) {
  std::vector<std::string> argv = {"/usr/bin/pg_dump", "--schema-only", "--no-owner",
                                   "--no-privileges",  "--dbname",      url};
  argv.insert(argv.end(), exclude.begin(), exclude.end());
  std::string out;
  EXPECT_EQ(RunBinary(argv, &out), 0) << out;
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    if (absl::StartsWith(line, "\\restrict") || absl::StartsWith(line, "\\unrestrict")) continue;
    lines.emplace_back(line);
  }
  return absl::StrJoin(lines, "\n");
}

// dbmate's binary: $SCHEMAGATE_DBMATE, on PATH, or where bench/run.sh puts
// it; "" if none.
std::string FindDbmate() {
  if (const char* path = std::getenv("SCHEMAGATE_DBMATE"); path != nullptr && *path != '\0') {
    return path;
  }
  const char* path_env = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path_env == nullptr ? "" : path_env, ':')) {
    const std::string candidate = absl::StrCat(dir, "/dbmate");
    if (!dir.empty() && access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  const std::string bench = SourcePath("bench/.tools/node_modules/@dbmate/linux-x64/bin/dbmate");
  return access(bench.c_str(), X_OK) == 0 ? bench : "";
}

class FormatsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { SG_REQUIRE_DATABASE(); }
};

TEST_P(FormatsTest, ASetInTheToolsFormatAppliesAndAnAgentIsReady) {
  const std::string format = GetParam();
  TempDir dir;
  const std::vector<std::string> versions = WriteSet(dir, format);
  TestDatabase db;
  CoordinatorProcess coordinator(db.url(), dir.path(), {"--format", format});
  std::string out;
  EXPECT_EQ(
      RunBinary({BinaryPath("schemagate-agent"), "wait", "--coordinator", coordinator.address(),
                 "--migrations-dir", dir.path(), "--format", format, "--timeout", "60s"},
                &out),
      0)
      << out << coordinator.process().Log();
  EXPECT_THAT(coordinator.process().Log(),
              HasSubstr(absl::StrCat("(", format, " format, head ", versions.back(), ")")));
  EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"status"}), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("CURRENT"));
  EXPECT_EQ(db.Query("SELECT count(*) FROM schemagate.migrations WHERE state = 'applied'"), "12");
  EXPECT_EQ(db.Query("SELECT max(version) FROM schemagate.migrations"), versions.back());
  // Built outside a transaction, and valid.
  EXPECT_EQ(db.Query("SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_email'::regclass"),
            "t");
  EXPECT_EQ(db.Query("SELECT count(*) FROM users"), "2");
  // The agent's check with the files and format agrees.
  EXPECT_EQ(RunBinary({BinaryPath("schemagate-agent"), "check", "--coordinator",
                       coordinator.address(), "--migrations-dir", dir.path(), "--format", format},
                      &out),
            0)
      << out;
  EXPECT_EQ(RunBinary({BinaryPath("schemagatectl"), "lint", "--migrations-dir", dir.path(),
                       "--format", format},
                      &out),
            0)
      << out;

  // The down of the last migration, then the set again.
  EXPECT_EQ(
      RunBinary(Ctl(coordinator.address(), {"rollback", "--target", versions[versions.size() - 2]}),
                &out),
      0)
      << out;
  EXPECT_EQ(db.Query("SELECT count(*) FROM pg_tables WHERE tablename = 'tags'"), "0");
  EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"apply", "--target", versions.back()}), &out), 0)
      << out;
  EXPECT_EQ(db.Query("SELECT count(*) FROM pg_tables WHERE tablename = 'tags'"), "1");
  EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"status"}), &out), 0) << out;

  if (format != "dbmate") return;
  const std::string dbmate = FindDbmate();
  if (dbmate.empty()) {
    std::fprintf(stderr,
                 "dbmate is not installed (npm install -g dbmate, or SCHEMAGATE_DBMATE): "
                 "the pg_dump comparison with dbmate's schema is skipped\n");
    return;
  }
  TestDatabase by_dbmate;
  const std::string url =
      by_dbmate.url() +
      (by_dbmate.url().find('?') == std::string::npos ? "?sslmode=disable" : "&sslmode=disable");
  ASSERT_EQ(
      RunBinary({dbmate, "--url", url, "--migrations-dir", dir.path(), "--no-dump-schema", "up"},
                &out),
      0)
      << out;
  EXPECT_EQ(SchemaDump(db.url(), {"--exclude-schema=schemagate"}),
            SchemaDump(by_dbmate.url(), {"--exclude-table=public.schema_migrations"}));
}

INSTANTIATE_TEST_SUITE_P(Formats, FormatsTest, ::testing::Values("goose", "dbmate", "flyway"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// Mixed formats, a goose Go migration, a Flyway Java migration: refused at
// load, with file and reason, exit 2, before the database is touched.
TEST(FormatRefusalTest, RefusedAtLoadWithFileAndReason) {
  SG_REQUIRE_DATABASE();
  struct Case {
    std::vector<std::pair<std::string, std::string>> files;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{{"0001_a.up.sql", "SELECT 1;\n"}, {"0002_b.sql", "-- +goose Up\nSELECT 1;\n"}},
       "files of more than one format: golang-migrate ("},
      {{{"0001_a.sql", "-- +goose Up\nSELECT 1;\n"}, {"0002_seed.go", "package m\n"}},
       "0002_seed.go:1: goose Go migrations are not supported; port it to SQL"},
      {{{"V1__a.sql", "SELECT 1;\n"}, {"V2__Seed.java", "class V2__Seed {}\n"}},
       "V2__Seed.java:1: Flyway Java migrations are not supported"},
  };
  for (const Case& c : cases) {
    TempDir dir;
    for (const auto& [name, content] : c.files) dir.Write(name, content);
    TestDatabase db;
    std::string out;
    EXPECT_EQ(RunBinary({BinaryPath("schemagated"), "--database-url", db.url(), "--migrations-dir",
                         dir.path(), "--listen", "127.0.0.1:0"},
                        &out, absl::Seconds(30)),
              2)
        << out;
    EXPECT_THAT(out, HasSubstr(c.expected));
    EXPECT_EQ(db.Query("SELECT count(*) FROM pg_namespace WHERE nspname = 'schemagate'"), "0");
    EXPECT_EQ(RunBinary({BinaryPath("schemagate-agent"), "check", "--migrations-dir", dir.path(),
                         "--coordinator", "127.0.0.1:1"},
                        &out),
              2)
        << out;
    EXPECT_THAT(out, HasSubstr(c.expected));
  }
}

}  // namespace
}  // namespace schemagate
