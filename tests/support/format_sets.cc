// Shared migration sets in the other tools' formats (format_sets.h).
#include "tests/support/format_sets.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace schemagate::testing {
namespace {

// Flyway's version of migration n: 1.1 .. 1.12.
std::string FlywayVersion(int n) { return absl::StrCat("1.", n); }

// Flyway's checksum: CRC-32 over the file's lines without their line ends,
// as a signed 32-bit integer.
int32_t FlywayChecksum(absl::string_view content) {
  uint32_t crc = 0xFFFFFFFFu;
  for (absl::string_view line : absl::StrSplit(content, '\n', absl::SkipEmpty())) {
    for (unsigned char c : line) {
      crc ^= c;
      for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
  }
  return static_cast<int32_t>(~crc);
}

}  // namespace

const std::vector<FormatStep>& FormatSteps() {
  static const std::vector<FormatStep> steps = {
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

std::string WriteFormatStep(const TempDir& dir, const std::string& format, int n,
                            const FormatStep& step) {
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
    return version;
  }
  if (format == "dbmate") {
    const std::string version = absl::StrCat(20240201000000 + n);
    const char* option = step.no_transaction ? " transaction:false" : "";
    dir.Write(absl::StrCat(version, "_", step.name, ".sql"),
              absl::StrCat("-- migrate:up", option, "\n", step.up, "\n\n-- migrate:down", option,
                           "\n", step.down, "\n"));
    return version;
  }
  // flyway: 1.1 .. 1.9, then 1.10 .. 1.12 (numeric, not text, order)
  dir.Write(absl::StrCat("V", FlywayVersion(n), "__", step.name, ".sql"), step.up + "\n");
  dir.Write(absl::StrCat("U", FlywayVersion(n), "__", step.name, ".sql"), step.down + "\n");
  return absl::StrCat(1000000000000000 + n * int64_t{1000000000000});
}

std::vector<std::string> WriteSet(const TempDir& dir, const std::string& format) {
  std::vector<std::string> versions;
  int n = 0;
  for (const FormatStep& step : FormatSteps())
    versions.push_back(WriteFormatStep(dir, format, ++n, step));
  return versions;
}

std::string ToolTable(const std::string& format) {
  if (format == "goose") return "public.goose_db_version";
  if (format == "dbmate") return "public.schema_migrations";
  return "public.flyway_schema_history";
}

bool MigrateAsTheTool(const TestDatabase& db, const TempDir& dir, const std::string& format,
                      const std::string& dbmate) {
  if (format == "dbmate") {
    const std::string url =
        db.url() +
        (db.url().find('?') == std::string::npos ? "?sslmode=disable" : "&sslmode=disable");
    std::string out;
    const int code = RunBinary(
        {dbmate, "--url", url, "--migrations-dir", dir.path(), "--no-dump-schema", "up"}, &out);
    EXPECT_EQ(code, 0) << out;
    return code == 0;
  }
  if (format == "goose") {
    // goose v3's table on PostgreSQL, and the row it writes when it creates it.
    db.Exec(
        "CREATE TABLE goose_db_version (id integer PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY,"
        " version_id bigint NOT NULL, is_applied boolean NOT NULL,"
        " tstamp timestamp NOT NULL DEFAULT now());"
        "INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true)");
  } else {
    // Flyway's createMetaDataTable.sql for PostgreSQL.
    db.Exec(
        "CREATE TABLE flyway_schema_history (installed_rank integer NOT NULL,"
        " version varchar(50), description varchar(200) NOT NULL, type varchar(20) NOT NULL,"
        " script varchar(1000) NOT NULL, checksum integer, installed_by varchar(100) NOT NULL,"
        " installed_on timestamp NOT NULL DEFAULT now(), execution_time integer NOT NULL,"
        " success boolean NOT NULL,"
        " CONSTRAINT flyway_schema_history_pk PRIMARY KEY (installed_rank));"
        "CREATE INDEX flyway_schema_history_s_idx ON flyway_schema_history (success)");
  }
  int n = 0;
  for (const FormatStep& step : FormatSteps()) {
    ++n;
    // Each up in its own transaction (one simple-query batch), the
    // non-transactional one on its own, as both tools run them.
    db.Exec(step.up);
    if (format == "goose") {
      db.Exec(absl::StrCat("INSERT INTO goose_db_version (version_id, is_applied) VALUES (",
                           20240101000000 + n, ", true)"));
    } else {
      const std::string script = absl::StrCat("V", FlywayVersion(n), "__", step.name, ".sql");
      std::string description = step.name;
      std::replace(description.begin(), description.end(), '_', ' ');
      db.Exec(absl::StrCat(
          "INSERT INTO flyway_schema_history (installed_rank, version, description, type, script,"
          " checksum, installed_by, execution_time, success) VALUES (",
          n, ", '", FlywayVersion(n), "', '", description, "', 'SQL', '", script, "', ",
          FlywayChecksum(step.up + "\n"), ", 'postgres', 3, true)"));
    }
  }
  return !::testing::Test::HasFailure();
}

int AgentWait(const std::string& address, const std::string& dir, const std::string& format,
              std::string* out) {
  std::vector<std::string> argv = {BinaryPath("schemagate-agent"),
                                   "wait",
                                   "--coordinator",
                                   address,
                                   "--migrations-dir",
                                   dir,
                                   "--timeout",
                                   "60s"};
  if (!format.empty()) argv.insert(argv.end(), {"--format", format});
  return RunBinary(argv, out);
}

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

}  // namespace schemagate::testing
