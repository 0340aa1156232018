// One migration set written in goose's, dbmate's or Flyway's own format
// (twelve migrations: one outside a transaction, one plpgsql function, a
// down for each), a database migrated as that tool migrates it, and the
// schema comparison: shared by tests/e2e/formats_test.cc (applied by
// schemagate) and tests/e2e/adopt_test.cc (adopted from the tool).
#ifndef SCHEMAGATE_TESTS_SUPPORT_FORMAT_SETS_H_
#define SCHEMAGATE_TESTS_SUPPORT_FORMAT_SETS_H_

#include <string>
#include <vector>

#include "tests/support/test_support.h"

namespace schemagate::testing {

struct FormatStep {
  std::string name, up, down;
  bool no_transaction = false;
  bool block = false;  // a plpgsql body: goose's StatementBegin/End around it
};

// The twelve steps; the tenth seeds two users rows (a re-run would make four).
const std::vector<FormatStep>& FormatSteps();

// Writes `step` as migration number `n` (1-based) of a `format` set into
// `dir`; returns the version schemagate stores for it.
std::string WriteFormatStep(const TempDir& dir, const std::string& format, int n,
                            const FormatStep& step);

// Writes FormatSteps() into `dir` as `format` lays them out; returns the
// stored version of each, in order.
std::vector<std::string> WriteSet(const TempDir& dir, const std::string& format);

// The bookkeeping table `format`'s tool keeps, schema-qualified.
std::string ToolTable(const std::string& format);

// Migrates `db` with FormatSteps() as the tool does: dbmate by running the
// real dbmate (`dbmate` must be its binary) on `dir`; goose and Flyway,
// which Debian and npm do not package, by running each up as the tool runs
// it and writing the tool's documented bookkeeping rows (goose_db_version
// with goose's version 0 row; flyway_schema_history with Flyway's columns,
// ranks, descriptions and script names). Returns false (with a test
// failure) on error.
bool MigrateAsTheTool(const TestDatabase& db, const TempDir& dir, const std::string& format,
                      const std::string& dbmate);

// `schemagate-agent wait` (60 s) on `address` with the app's files in `dir`
// (`format`: "" for auto); the exit code, its output in *out.
int AgentWait(const std::string& address, const std::string& dir, const std::string& format,
              std::string* out);

// pg_dump of `url`'s schema, without `exclude` and pg_dump's random
// \restrict lines.
std::string SchemaDump(const std::string& url, const std::vector<std::string>& exclude);

// dbmate's binary: $SCHEMAGATE_DBMATE, on PATH, or where bench/run.sh and
// .ci/run put it (bench/.tools, from npm); "" if none.
std::string FindDbmate();

// `var` = FindDbmate(), or the test is skipped; with
// SCHEMAGATE_REQUIRE_DBMATE=1 (.ci/run sets it when npm is there) a missing
// dbmate fails the test instead.
#define SG_REQUIRE_DBMATE(var)                                                                \
  const std::string var = ::schemagate::testing::FindDbmate();                                \
  if (var.empty()) {                                                                          \
    if (const char* r = std::getenv("SCHEMAGATE_REQUIRE_DBMATE"); r && std::string(r) == "1") \
      FAIL() << "dbmate not found (SCHEMAGATE_DBMATE, PATH, bench/.tools)";                   \
    GTEST_SKIP() << "dbmate is not installed (npm install --prefix bench/.tools dbmate, "     \
                    "or SCHEMAGATE_DBMATE)";                                                  \
  }

}  // namespace schemagate::testing

#endif  // SCHEMAGATE_TESTS_SUPPORT_FORMAT_SETS_H_
