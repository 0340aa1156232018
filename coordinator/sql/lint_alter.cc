// The linter's ALTER TABLE rules: what each subcommand locks or rewrites,
// added columns and constraints, and the indexes constraints build.
#include <cstdlib>
#include <iterator>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "coordinator/sql/lint_internal.h"
#include "pg_query.pb.h"

namespace schemagate {
namespace lint_internal {

void MigrationLinter::LintAlterTable(const pg_query::AlterTableStmt& alter, int line) {
  // ALTER INDEX / VIEW / SEQUENCE share the node; the rules are about tables.
  if (alter.objtype() != pg_query::OBJECT_TABLE) return;
  const RelationName table = NameOf(alter.relation());
  if (created_.Contains(table)) return;
  bool access_exclusive = false;
  for (const pg_query::Node& node : alter.cmds()) {
    if (!node.has_alter_table_cmd()) continue;
    const pg_query::AlterTableCmd& cmd = node.alter_table_cmd();
    access_exclusive |= TakesAccessExclusive(cmd);
    switch (cmd.subtype()) {
      case pg_query::AT_AddColumn:
        if (cmd.def().has_column_def()) LintAddColumn(table, cmd.def().column_def(), line);
        break;
      case pg_query::AT_DropColumn:
        if (!breaking_) {
          Add(LintSeverity::kError, "drop-column-not-breaking", line,
              absl::StrCat("ALTER TABLE ", Display(table), " DROP COLUMN ", cmd.name(),
                           " in a migration not marked `-- schemagate:breaking`: schemagate "
                           "applies it while instances built before it still run, and every "
                           "query of theirs that uses column ",
                           cmd.name(), " fails"),
              ContractFix(absl::StrCat("column ", cmd.name()), "drop it"));
        }
        break;
      case pg_query::AT_AlterColumnType:
        Add(LintSeverity::kWarning, "alter-column-type", line,
            absl::StrCat("ALTER TABLE ", Display(table), " ALTER COLUMN ", cmd.name(),
                         " TYPE rewrites the whole table and rebuilds its indexes under an "
                         "ACCESS EXCLUSIVE lock (unless the new type is binary-compatible, "
                         "e.g. varchar(n) to text): every read and write of ",
                         Display(table), " waits for the rewrite"),
            absl::StrCat("expand/contract: add a new column of the new type, write both "
                         "(application or trigger), backfill in batches, deploy an "
                         "application that uses only the new column, then drop ",
                         cmd.name(), " in a contract migration marked `-- schemagate:breaking`"));
        break;
      case pg_query::AT_SetNotNull:
        Add(LintSeverity::kWarning, "set-not-null", line,
            absl::StrCat("ALTER TABLE ", Display(table), " ALTER COLUMN ", cmd.name(),
                         " SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock "
                         "to look for NULLs: every read and write of ",
                         Display(table), " waits for the scan"),
            absl::StrCat("`ALTER TABLE ", Display(table), " ADD CONSTRAINT ", table.name, "_",
                         cmd.name(), "_not_null CHECK (", cmd.name(),
                         " IS NOT NULL) NOT VALID`; `VALIDATE CONSTRAINT` it in a later "
                         "migration (reads and writes continue); then SET NOT NULL, which "
                         "PostgreSQL 12+ proves from the valid constraint without a scan, "
                         "and drop the CHECK"));
        break;
      case pg_query::AT_AddConstraint:
        if (cmd.def().has_constraint()) LintAddConstraint(table, cmd.def().constraint(), line);
        break;
      default:
        break;
    }
  }
  if (access_exclusive) CheckLockTimeout(absl::StrCat("ALTER TABLE ", Display(table)), line);
}

void MigrationLinter::LintAddColumn(const RelationName& table, const pg_query::ColumnDef& column,
                                    int line) {
  bool not_null = column.is_not_null();
  bool has_value = column.has_raw_default() || !column.identity().empty() ||
                   !column.generated().empty() || IsSerialType(column.type_name());
  for (const pg_query::Node& node : column.constraints()) {
    if (!node.has_constraint()) continue;
    const pg_query::Constraint& constraint = node.constraint();
    switch (constraint.contype()) {
      case pg_query::CONSTR_NOTNULL:
        not_null = true;
        break;
      case pg_query::CONSTR_DEFAULT:
      case pg_query::CONSTR_IDENTITY:
      case pg_query::CONSTR_GENERATED:
        has_value = true;
        break;
      case pg_query::CONSTR_PRIMARY:
        not_null = true;
        AddConstraintBuildsIndex(table, "PRIMARY KEY", column.colname(), line);
        break;
      case pg_query::CONSTR_UNIQUE:
        AddConstraintBuildsIndex(table, "UNIQUE", column.colname(), line);
        break;
      case pg_query::CONSTR_FOREIGN:
        // A column constraint cannot say NOT VALID.
        Add(LintSeverity::kWarning, "foreign-key-without-not-valid", line,
            absl::StrCat("ALTER TABLE ", Display(table), " ADD COLUMN ", column.colname(),
                         " ... REFERENCES ", Display(NameOf(constraint.pktable())),
                         " checks every existing row of ", Display(table),
                         " while the ADD COLUMN holds an ACCESS EXCLUSIVE lock on it"),
            absl::StrCat("add the column without REFERENCES, then `ALTER TABLE ", Display(table),
                         " ADD CONSTRAINT ", table.name, "_", column.colname(),
                         "_fkey FOREIGN KEY (", column.colname(), ") REFERENCES ",
                         Display(NameOf(constraint.pktable())),
                         " ... NOT VALID`, and VALIDATE CONSTRAINT in a later migration"));
        break;
      default:
        break;
    }
  }
  if (not_null && !has_value) {
    Add(LintSeverity::kWarning, "add-column-not-null-without-default", line,
        absl::StrCat("ALTER TABLE ", Display(table), " ADD COLUMN ", column.colname(),
                     " NOT NULL without a DEFAULT fails on any table that already has rows "
                     "(they would hold NULL), so the run fails in production though it "
                     "passed on an empty development database"),
        absl::StrCat("add ", column.colname(),
                     " nullable (or with a constant DEFAULT, which PostgreSQL 11+ adds "
                     "without a rewrite), backfill existing rows in batches, then `ADD "
                     "CONSTRAINT ... CHECK (",
                     column.colname(),
                     " IS NOT NULL) NOT VALID`, VALIDATE it in a later migration, and SET NOT "
                     "NULL (PostgreSQL 12+ skips the scan)"));
  }
}

void MigrationLinter::LintAddConstraint(const RelationName& table,
                                        const pg_query::Constraint& constraint, int line) {
  const std::string name =
      constraint.conname().empty() ? "" : absl::StrCat(" ", constraint.conname());
  const std::string validate =
      absl::StrCat("`ALTER TABLE ", Display(table), " VALIDATE CONSTRAINT ",
                   constraint.conname().empty() ? "<name>" : constraint.conname(), "`");
  switch (constraint.contype()) {
    case pg_query::CONSTR_FOREIGN:
      if (constraint.skip_validation()) return;
      Add(LintSeverity::kWarning, "foreign-key-without-not-valid", line,
          absl::StrCat("ALTER TABLE ", Display(table), " ADD CONSTRAINT", name,
                       " FOREIGN KEY without NOT VALID checks every existing row of ",
                       Display(table), " while holding SHARE ROW EXCLUSIVE locks on ",
                       Display(table), " and ", Display(NameOf(constraint.pktable())),
                       ": writes to both wait for the whole scan"),
          absl::StrCat("add it with NOT VALID (only new and changed rows are checked; the lock "
                       "is brief), then ",
                       validate,
                       " in a later migration, which checks the existing rows without "
                       "blocking writes"));
      break;
    case pg_query::CONSTR_CHECK:
      if (constraint.skip_validation()) return;
      Add(LintSeverity::kWarning, "check-without-not-valid", line,
          absl::StrCat("ALTER TABLE ", Display(table), " ADD CONSTRAINT", name,
                       " CHECK without NOT VALID scans every existing row of ", Display(table),
                       " under an ACCESS EXCLUSIVE lock: every read and write waits for the "
                       "scan"),
          absl::StrCat("add it with NOT VALID (only new and changed rows are checked), then ",
                       validate,
                       " in a later migration (SHARE UPDATE EXCLUSIVE: reads and writes "
                       "continue)"));
      break;
    case pg_query::CONSTR_PRIMARY:
    case pg_query::CONSTR_UNIQUE:
      // ... USING INDEX adopts an index built beforehand: no build here.
      if (!constraint.indexname().empty()) return;
      AddConstraintBuildsIndex(
          table, constraint.contype() == pg_query::CONSTR_PRIMARY ? "PRIMARY KEY" : "UNIQUE", "",
          line);
      break;
    default:
      break;
  }
}

void MigrationLinter::AddConstraintBuildsIndex(const RelationName& table, absl::string_view kind,
                                               absl::string_view column, int line) {
  const std::string what = column.empty() ? absl::StrCat("ADD ", kind)
                                          : absl::StrCat("ADD COLUMN ", column, " ... ", kind);
  Add(LintSeverity::kWarning, "constraint-builds-index", line,
      absl::StrCat("ALTER TABLE ", Display(table), " ", what,
                   " builds a unique index under an ACCESS EXCLUSIVE lock: every read and "
                   "write of ",
                   Display(table), " waits for the whole build"),
      absl::StrCat("`CREATE UNIQUE INDEX CONCURRENTLY <index> ON ", Display(table),
                   " (...)` in a migration of its own marked `-- schemagate:no-transaction`, "
                   "then `ALTER TABLE ",
                   Display(table), " ADD CONSTRAINT <name> ", kind,
                   " USING INDEX <index>`, which only takes a brief lock"));
}

}  // namespace lint_internal
}  // namespace schemagate
