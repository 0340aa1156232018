// Reading other tools' bookkeeping tables (foreign_tables.h).
#include "coordinator/postgres/foreign_tables.h"

#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "coordinator/postgres/pg_support.h"

namespace schemagate {
namespace {

// The table `name` resolves to through the search_path, schema-qualified
// and quoted, with its columns; nullopt when there is none.
struct FoundTable {
  std::string qualified;
  std::set<std::string> columns;
  // The type of column `version` (format_type), "" if it has none.
  std::string version_type;
};

std::optional<FoundTable> FindTable(pqxx::transaction_base& tx, const char* name) {
  pqxx::result r = tx.exec_params(
      "SELECT format('%I.%I', n.nspname, c.relname), a.attname, format_type(a.atttypid, "
      "a.atttypmod) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN "
      "pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
      "WHERE c.oid = to_regclass(quote_ident($1)) AND c.relkind IN ('r', 'p')",
      std::string(name));
  if (r.empty()) return std::nullopt;
  FoundTable found;
  for (const pqxx::row& row : r) {
    found.qualified = row[0].as<std::string>();
    found.columns.insert(row[1].as<std::string>());
    if (row[1].as<std::string>() == "version") found.version_type = row[2].as<std::string>();
  }
  return found;
}

bool Has(const FoundTable& t, std::initializer_list<const char*> columns) {
  for (const char* c : columns) {
    if (t.columns.count(c) == 0) return false;
  }
  return true;
}

}  // namespace

std::vector<ForeignBookkeeping> ReadForeignTables(pqxx::transaction_base& tx) {
  std::vector<ForeignBookkeeping> found;
  if (std::optional<FoundTable> t = FindTable(tx, "schema_migrations")) {
    if (Has(*t, {"version", "dirty"})) {
      std::vector<GolangMigrateRow> rows;
      for (const pqxx::row& row : tx.exec(absl::StrCat("SELECT version::bigint, dirty FROM ",
                                                       t->qualified, " ORDER BY version"))) {
        rows.push_back({row[0].as<int64_t>(), row[1].as<bool>()});
      }
      found.push_back(ParseGolangMigrateRows(rows));
      found.back().table = t->qualified;
    } else if (Has(*t, {"version"}) &&
               (t->version_type.rfind("character", 0) == 0 || t->version_type == "text")) {
      std::vector<std::string> versions;
      for (const pqxx::row& row : tx.exec(absl::StrCat("SELECT version FROM ", t->qualified,
                                                       " ORDER BY version COLLATE \"C\""))) {
        versions.push_back(row[0].as<std::string>());
      }
      found.push_back(ParseDbmateRows(versions));
      found.back().table = t->qualified;
    }
  }
  if (std::optional<FoundTable> t = FindTable(tx, "goose_db_version");
      t && Has(*t, {"id", "version_id", "is_applied"})) {
    std::vector<GooseRow> rows;
    for (const pqxx::row& row :
         tx.exec(absl::StrCat("SELECT id::bigint, version_id::bigint, is_applied FROM ",
                              t->qualified, " ORDER BY id"))) {
      rows.push_back({row[0].as<int64_t>(), row[1].as<int64_t>(), row[2].as<bool>()});
    }
    found.push_back(ParseGooseRows(rows));
    found.back().table = t->qualified;
  }
  if (std::optional<FoundTable> t = FindTable(tx, "flyway_schema_history");
      t && Has(*t, {"installed_rank", "version", "type", "script", "success"})) {
    std::vector<FlywayRow> rows;
    for (const pqxx::row& row : tx.exec(absl::StrCat(
             "SELECT installed_rank::bigint, version, coalesce(description, ''), type, script, "
             "success FROM ",
             t->qualified, " ORDER BY installed_rank"))) {
      FlywayRow r;
      r.installed_rank = row[0].as<int64_t>();
      if (!row[1].is_null()) r.version = row[1].as<std::string>();
      r.description = row[2].as<std::string>();
      r.type = row[3].as<std::string>("");
      r.script = row[4].as<std::string>("");
      r.success = row[5].as<bool>(true);
      rows.push_back(std::move(r));
    }
    found.push_back(ParseFlywayRows(rows));
    found.back().table = t->qualified;
  }
  if (std::optional<FoundTable> t = FindTable(tx, "alembic_version");
      t && Has(*t, {"version_num"})) {
    std::vector<std::string> heads;
    for (const pqxx::row& row : tx.exec(absl::StrCat("SELECT version_num FROM ", t->qualified,
                                                     " ORDER BY version_num COLLATE \"C\""))) {
      heads.push_back(row[0].as<std::string>());
    }
    found.push_back(ParseAlembicRows(heads));
    found.back().table = t->qualified;
  }
  return found;
}

absl::StatusOr<std::vector<ForeignBookkeeping>> ReadForeignTables(const std::string& conninfo) {
  try {
    std::unique_ptr<pqxx::connection> conn = Connect(conninfo, "schemagatectl");
    pqxx::read_transaction tx(*conn);
    return ReadForeignTables(tx);
  } catch (const std::exception& e) {
    return Unavailable(e);
  }
}

void WriteAdoptionRows(pqxx::transaction_base& tx, const std::string& migrations_table,
                       const std::vector<AdoptedRow>& rows) {
  for (const AdoptedRow& row : rows) {
    tx.exec_params(absl::StrCat("INSERT INTO ", migrations_table,
                                " (version, name, checksum, state, applied_by, run_id) VALUES"
                                " ($1, $2, $3, $4, $5, $6)"),
                   row.record.version, row.record.name, row.record.checksum,
                   std::string(row.dirty ? "dirty" : "applied"), row.record.actor,
                   row.record.run_id);
  }
}

}  // namespace schemagate
