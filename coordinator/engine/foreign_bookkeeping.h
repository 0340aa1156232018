// Another migration tool's bookkeeping on a database schemagate has not run
// on yet (docs/coming-from-*.md): golang-migrate's and dbmate's
// `schema_migrations`, goose's `goose_db_version`, Flyway's
// `flyway_schema_history`, Alembic's `alembic_version`. The rows as read
// (coordinator/postgres/foreign_tables.h reads them), and what they say was
// applied, in the tool's own words. Pure functions, no I/O; thread-safe.
#ifndef SCHEMAGATE_COORDINATOR_ENGINE_FOREIGN_BOOKKEEPING_H_
#define SCHEMAGATE_COORDINATOR_ENGINE_FOREIGN_BOOKKEEPING_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace schemagate {

enum class ForeignTool { kGolangMigrate, kDbmate, kGoose, kFlyway, kAlembic };

// What --from takes, for help texts.
inline constexpr char kForeignToolChoices[] = "goose|dbmate|golang-migrate|flyway|alembic";

// "golang-migrate", "dbmate", "goose", "flyway", "alembic".
const char* ForeignToolName(ForeignTool tool);
// INVALID_ARGUMENT for anything but the names above.
absl::StatusOr<ForeignTool> ParseForeignTool(absl::string_view text);

// A row of golang-migrate's schema_migrations(version bigint, dirty boolean).
struct GolangMigrateRow {
  int64_t version = 0;
  bool dirty = false;
};

// A row of goose's goose_db_version(id, version_id, is_applied, tstamp).
struct GooseRow {
  int64_t id = 0;
  int64_t version_id = 0;
  bool is_applied = false;
};

// A row of Flyway's flyway_schema_history.
struct FlywayRow {
  int64_t installed_rank = 0;
  // NULL for repeatable migrations and the schema-creation row.
  std::optional<std::string> version;
  std::string description;
  // SQL, JDBC, BASELINE, UNDO_SQL, SCHEMA, DELETE, ...
  std::string type;
  std::string script;
  bool success = true;
};

// One version the tool recorded, in its words.
struct ForeignVersion {
  // As the tool writes it: "20240101120000", "1.2", an Alembic revision.
  std::string version;
  // golang-migrate's dirty flag, a Flyway row with success = false: the
  // migration started and did not finish.
  bool dirty = false;
  // Where it was read, for messages: "installed_rank 7".
  std::string detail;
};

// What a foreign table says.
struct ForeignBookkeeping {
  ForeignTool tool = ForeignTool::kGolangMigrate;
  // Schema-qualified, as found: "public.goose_db_version".
  std::string table;
  // Versions recorded one by one (dbmate, goose, Flyway), in the order the
  // tool applied them.
  std::vector<ForeignVersion> applied;
  // golang-migrate's current version and Alembic's revision: it and every
  // version of the set below it count as applied. Flyway's baseline: every
  // version of the set at or below it (no file of its own is needed).
  std::optional<ForeignVersion> up_to;
  bool up_to_is_baseline = false;
  // Rows that are not adopted and why (a repeatable Flyway migration, an
  // undone version), for the report.
  std::vector<std::string> notes;
  // Why the table cannot be adopted at all (several golang-migrate rows,
  // Alembic branches); empty when it can.
  std::vector<std::string> problems;
  // Rows read, for messages.
  int64_t row_count = 0;
};

// The parsers, one per table. Rows in the order the reader gives them
// (by version, id or installed_rank).
ForeignBookkeeping ParseGolangMigrateRows(const std::vector<GolangMigrateRow>& rows);
ForeignBookkeeping ParseDbmateRows(const std::vector<std::string>& versions);
ForeignBookkeeping ParseGooseRows(const std::vector<GooseRow>& rows);
ForeignBookkeeping ParseFlywayRows(const std::vector<FlywayRow>& rows);
ForeignBookkeeping ParseAlembicRows(const std::vector<std::string>& version_nums);

// One line about what `found` records: "public.goose_db_version (goose):
// 12 versions applied, the last 20240105".
std::string DescribeForeign(const ForeignBookkeeping& found);

// The Alembic revision an imported migration's up file names in its header
// (`-- alembic revision: 1975ea83b712`, import-alembic writes it); "" when
// there is none.
std::string AlembicRevisionInHeader(absl::string_view content);
inline constexpr char kAlembicRevisionHeader[] = "-- alembic revision: ";

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_ENGINE_FOREIGN_BOOKKEEPING_H_
