#include "coordinator/sql/lint.h"

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
#include "coordinator/sql/lint_rules.h"
#include "pg_query.h"
#include "pg_query.pb.h"

namespace schemagate {
namespace {

using NodeList = google::protobuf::RepeatedPtrField<pg_query::Node>;

// A relation as the SQL names it; an empty schema means "found through the
// search_path".
struct RelationName {
  std::string schema;
  std::string name;
};

RelationName NameOf(const pg_query::RangeVar& range_var) {
  return {range_var.schemaname(), range_var.relname()};
}

std::string Display(const RelationName& relation) {
  return relation.schema.empty() ? relation.name
                                 : absl::StrCat(relation.schema, ".", relation.name);
}

// The linter cannot resolve the search_path, so an unqualified name matches
// the same name in any schema: rarely wrong, and wrong only by staying quiet.
bool SameRelation(const RelationName& a, const RelationName& b) {
  return a.name == b.name && (a.schema.empty() || b.schema.empty() || a.schema == b.schema);
}

// The fix for a change that breaks instances built before it.
std::string ContractFix(absl::string_view old_thing, absl::string_view contract_step) {
  return absl::StrCat(
      "expand/contract: first deploy an application version that no longer uses ", old_thing,
      "; then ", contract_step,
      " in a contract migration marked `-- schemagate:breaking` (this one, if it does nothing "
      "else), which schemagate applies only once no running instance still uses ",
      old_thing);
}

// DROP names its objects as lists of strings: [name], [schema, name] or
// [catalog, schema, name].
RelationName NameOfDropObject(const pg_query::Node& object) {
  std::vector<std::string> parts;
  if (object.has_list()) {
    for (const pg_query::Node& item : object.list().items()) {
      if (item.has_string()) parts.push_back(item.string().sval());
    }
  } else if (object.has_string()) {
    parts.push_back(object.string().sval());
  }
  RelationName relation;
  if (!parts.empty()) relation.name = parts.back();
  if (parts.size() >= 2) relation.schema = parts[parts.size() - 2];
  return relation;
}

// Whether a generic option such as VACUUM's FULL or REINDEX's CONCURRENTLY
// is on: a bare option is, `FULL false` / `FULL off` / `FULL 0` is not.
bool OptionIsOn(const NodeList& options, absl::string_view name) {
  for (const pg_query::Node& option : options) {
    if (!option.has_def_elem() || absl::AsciiStrToLower(option.def_elem().defname()) != name) {
      continue;
    }
    if (!option.def_elem().has_arg()) return true;
    const pg_query::Node& arg = option.def_elem().arg();
    if (arg.has_boolean()) return arg.boolean().boolval();
    if (arg.has_integer()) return arg.integer().ival() != 0;
    if (arg.has_string()) {
      const std::string value = absl::AsciiStrToLower(arg.string().sval());
      return value != "false" && value != "off" && value != "no" && value != "0";
    }
    return true;
  }
  return false;
}

// Relations (tables, views, indexes) that the migration creates before the
// statement being linted. They are new and empty, and no running application
// uses them yet, so dropping, locking or rewriting them hurts no one.
class CreatedRelations {
 public:
  void Add(RelationName relation) { relations_.push_back(std::move(relation)); }

  bool Contains(const RelationName& relation) const {
    for (const RelationName& created : relations_) {
      if (SameRelation(created, relation)) return true;
    }
    return false;
  }
  bool Contains(const pg_query::RangeVar& range_var) const { return Contains(NameOf(range_var)); }

 private:
  std::vector<RelationName> relations_;
};

// Whether an ALTER TABLE subcommand takes ACCESS EXCLUSIVE. Mirrors
// AlterTableGetLockLevel in PostgreSQL 15's tablecmds.c: everything does
// except the subcommands listed here, which only block writes or other DDL.
bool TakesAccessExclusive(const pg_query::AlterTableCmd& cmd) {
  switch (cmd.subtype()) {
    // SHARE ROW EXCLUSIVE.
    case pg_query::AT_EnableTrig:
    case pg_query::AT_EnableAlwaysTrig:
    case pg_query::AT_EnableReplicaTrig:
    case pg_query::AT_EnableTrigAll:
    case pg_query::AT_EnableTrigUser:
    case pg_query::AT_DisableTrig:
    case pg_query::AT_DisableTrigAll:
    case pg_query::AT_DisableTrigUser:
    // SHARE UPDATE EXCLUSIVE.
    case pg_query::AT_SetStatistics:
    case pg_query::AT_ClusterOn:
    case pg_query::AT_DropCluster:
    case pg_query::AT_SetOptions:
    case pg_query::AT_ResetOptions:
    case pg_query::AT_ValidateConstraint:
    case pg_query::AT_AttachPartition:
    case pg_query::AT_DetachPartitionFinalize:
    // Storage parameters: PostgreSQL picks the level per parameter; the ones
    // migrations set (fillfactor, autovacuum_*) take SHARE UPDATE EXCLUSIVE.
    case pg_query::AT_SetRelOptions:
    case pg_query::AT_ResetRelOptions:
      return false;
    case pg_query::AT_DetachPartition:
      return !cmd.def().partition_cmd().concurrent();
    case pg_query::AT_AddConstraint:
      // A foreign key takes SHARE ROW EXCLUSIVE (it adds triggers).
      return !(cmd.def().has_constraint() &&
               cmd.def().constraint().contype() == pg_query::CONSTR_FOREIGN);
    default:
      return true;
  }
}

bool IsSerialType(const pg_query::TypeName& type_name) {
  if (type_name.names().empty() || !type_name.names().rbegin()->has_string()) return false;
  const std::string name = absl::AsciiStrToLower(type_name.names().rbegin()->string().sval());
  return name == "serial" || name == "serial4" || name == "bigserial" || name == "serial8" ||
         name == "smallserial" || name == "serial2";
}

// Lints one migration's up script, statement by statement in file order.
class MigrationLinter {
 public:
  MigrationLinter(const MigrationScript& up, const LintOptions& options)
      : script_(up), breaking_(up.directives.breaking) {
    if (script_.directives.lock_timeout.has_value()) {
      if (*script_.directives.lock_timeout <= absl::ZeroDuration()) {
        no_lock_timeout_reason_ = "the migration sets lock-timeout=0";
      }
    } else if (options.default_lock_timeout <= absl::ZeroDuration()) {
      no_lock_timeout_reason_ =
          "the migration sets no lock-timeout and schemagated's default --lock-timeout is 0";
    }
  }

  std::vector<LintFinding> Run() {
    if (script_.statements.empty()) {
      Add(LintSeverity::kWarning, "empty-migration", 1,
          "the migration has no SQL statement (only comments or blank lines): schemagate records "
          "it as applied and nothing changes, which is usually SQL that was never written or "
          "was commented out",
          "write its SQL, or delete the file if no database has applied it yet; a deliberate "
          "placeholder says so with `-- schemagate:lint-ignore=empty-migration reason: ...`");
    }
    for (const SqlStatement& statement : script_.statements) LintStatement(statement);
    FinishLockTimeout();
    std::vector<LintFinding> findings;
    for (size_t i = 0; i < findings_.size(); ++i) {
      if (withdrawn_.count(i) == 0) findings.push_back(std::move(findings_[i]));
    }
    return findings;
  }

 private:
  void LintStatement(const SqlStatement& statement) {
    PgQueryProtobufParseResult result = pg_query_parse_protobuf(statement.text.c_str());
    if (result.error != nullptr) {
      // The loader refuses such files, so this only happens for a Migration
      // built by hand; report it rather than guess.
      Add(LintSeverity::kError, "unparsable-statement", statement.line,
          absl::StrCat("PostgreSQL's parser rejects this statement: ", result.error->message),
          "correct the SQL so PostgreSQL 15's parser accepts it; loading the set reports "
          "the parser's full error");
      pg_query_free_protobuf_parse_result(result);
      return;
    }
    pg_query::ParseResult tree;
    const bool decoded =
        tree.ParseFromArray(result.parse_tree.data, static_cast<int>(result.parse_tree.len));
    pg_query_free_protobuf_parse_result(result);
    if (!decoded) return;  // A libpg_query bug; the loader already reports it.
    for (const pg_query::RawStmt& raw : tree.stmts()) LintNode(raw.stmt(), statement.line);
  }

  void LintNode(const pg_query::Node& node, int line) {
    switch (node.node_case()) {
      case pg_query::Node::kCreateStmt:
        created_.Add(NameOf(node.create_stmt().relation()));
        break;
      case pg_query::Node::kCreateTableAsStmt:
        created_.Add(NameOf(node.create_table_as_stmt().into().rel()));
        break;
      case pg_query::Node::kSelectStmt:
        if (node.select_stmt().has_into_clause()) {
          created_.Add(NameOf(node.select_stmt().into_clause().rel()));
        }
        break;
      case pg_query::Node::kViewStmt:
        created_.Add(NameOf(node.view_stmt().view()));
        WithdrawRenameUnderView(NameOf(node.view_stmt().view()));
        break;
      case pg_query::Node::kIndexStmt:
        LintIndex(node.index_stmt(), line);
        break;
      case pg_query::Node::kAlterTableStmt:
        LintAlterTable(node.alter_table_stmt(), line);
        break;
      case pg_query::Node::kRenameStmt:
        LintRename(node.rename_stmt(), line);
        break;
      case pg_query::Node::kDropStmt:
        LintDrop(node.drop_stmt(), line);
        break;
      case pg_query::Node::kTruncateStmt:
        LintRelationsLocked("TRUNCATE", node.truncate_stmt().relations(), line);
        break;
      case pg_query::Node::kLockStmt: {
        // 8 is AccessExclusiveLock, LOCK TABLE's default mode; NOWAIT never waits.
        const pg_query::LockStmt& lock = node.lock_stmt();
        if (lock.mode() == 8 && !lock.nowait()) {
          LintRelationsLocked("LOCK TABLE ... IN ACCESS EXCLUSIVE MODE", lock.relations(), line);
        }
        break;
      }
      case pg_query::Node::kReindexStmt:
        LintReindex(node.reindex_stmt(), line);
        break;
      case pg_query::Node::kClusterStmt: {
        const pg_query::ClusterStmt& cluster = node.cluster_stmt();
        if (!cluster.has_relation()) {
          CheckLockTimeout("CLUSTER (every previously clustered table)", line);
        } else if (!created_.Contains(cluster.relation())) {
          CheckLockTimeout(absl::StrCat("CLUSTER ", Display(NameOf(cluster.relation()))), line);
        }
        break;
      }
      case pg_query::Node::kVacuumStmt:
        LintVacuum(node.vacuum_stmt(), line);
        break;
      case pg_query::Node::kUpdateStmt: {
        const pg_query::UpdateStmt& update = node.update_stmt();
        if (!update.has_where_clause()) LintWholeTableWrite("UPDATE", update.relation(), line);
        break;
      }
      case pg_query::Node::kDeleteStmt: {
        const pg_query::DeleteStmt& del = node.delete_stmt();
        if (!del.has_where_clause()) LintWholeTableWrite("DELETE", del.relation(), line);
        break;
      }
      case pg_query::Node::kRefreshMatViewStmt: {
        const pg_query::RefreshMatViewStmt& refresh = node.refresh_mat_view_stmt();
        if (!refresh.concurrent() && !created_.Contains(refresh.relation())) {
          CheckLockTimeout(
              absl::StrCat("REFRESH MATERIALIZED VIEW ", Display(NameOf(refresh.relation()))),
              line);
        }
        break;
      }
      default:
        break;
    }
  }

  void LintIndex(const pg_query::IndexStmt& index, int line) {
    const RelationName table = NameOf(index.relation());
    const bool existing = !created_.Contains(table);
    // An index lives in its table's schema.
    if (!index.idxname().empty()) created_.Add({table.schema, index.idxname()});
    if (index.concurrent() || !existing) return;
    const std::string create = index.unique() ? "CREATE UNIQUE INDEX" : "CREATE INDEX";
    const std::string name = index.idxname().empty() ? "" : absl::StrCat(" ", index.idxname());
    Add(LintSeverity::kWarning, "index-not-concurrent", line,
        absl::StrCat(create, name, " ON ", Display(table),
                     " without CONCURRENTLY holds a SHARE lock on ", Display(table),
                     " for the whole build: every INSERT, UPDATE and DELETE on it waits until "
                     "the index is built (minutes on a large table)"),
        absl::StrCat("build it with `", create, " CONCURRENTLY", name, " ON ", Display(table),
                     " ...` in a migration of its own marked `-- schemagate:no-transaction` "
                     "(CONCURRENTLY cannot run inside a transaction block)"));
  }

  void LintAlterTable(const pg_query::AlterTableStmt& alter, int line) {
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

  void LintAddColumn(const RelationName& table, const pg_query::ColumnDef& column, int line) {
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

  void LintAddConstraint(const RelationName& table, const pg_query::Constraint& constraint,
                         int line) {
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

  void AddConstraintBuildsIndex(const RelationName& table, absl::string_view kind,
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

  void LintRename(const pg_query::RenameStmt& rename, int line) {
    const RelationName relation = NameOf(rename.relation());
    const bool existing = !created_.Contains(relation);
    std::string what = absl::StrCat("ALTER TABLE ", Display(relation), " RENAME");
    switch (rename.rename_type()) {
      case pg_query::OBJECT_TABLE:
        if (!existing) {
          // The new name is as new as the old one was.
          created_.Add({relation.schema, rename.newname()});
          return;
        }
        if (!breaking_) {
          Add(LintSeverity::kError, "rename-table-not-breaking", line,
              absl::StrCat("ALTER TABLE ", Display(relation), " RENAME TO ", rename.newname(),
                           " in a migration not marked `-- schemagate:breaking`: schemagate "
                           "applies it while instances built before it still run, and every "
                           "query of theirs on ",
                           Display(relation), " fails"),
              absl::StrCat("keep the old name working while instances still use it: follow "
                           "the rename in this migration with `CREATE VIEW ",
                           Display(relation), " AS SELECT * FROM ", rename.newname(),
                           "` (a simple view is updatable), deploy an application that uses ",
                           rename.newname(),
                           ", then drop the view in a contract migration marked `-- "
                           "schemagate:breaking`, which schemagate applies only once no running "
                           "instance still uses ",
                           Display(relation)));
          renamed_tables_.push_back({relation, findings_.size() - 1});
        }
        break;
      case pg_query::OBJECT_COLUMN:
        if (rename.relation_type() != pg_query::OBJECT_TABLE || !existing) return;
        if (!breaking_) {
          Add(LintSeverity::kError, "rename-column-not-breaking", line,
              absl::StrCat("ALTER TABLE ", Display(relation), " RENAME COLUMN ", rename.subname(),
                           " TO ", rename.newname(),
                           " in a migration not marked `-- schemagate:breaking`: schemagate "
                           "applies it while instances built before it still run, and every "
                           "query of theirs that uses column ",
                           rename.subname(), " fails"),
              absl::StrCat("expand/contract: add column ", rename.newname(),
                           " instead, write both columns (application or trigger) and backfill, "
                           "deploy an application that uses only ",
                           rename.newname(), ", then drop ", rename.subname(),
                           " in a contract migration marked `-- schemagate:breaking`, which "
                           "schemagate applies only once no running instance still uses it"));
        }
        break;
      case pg_query::OBJECT_TABCONSTRAINT:
        if (!existing) return;
        break;
      case pg_query::OBJECT_VIEW:
        if (!existing) {
          created_.Add({relation.schema, rename.newname()});
          return;
        }
        what = absl::StrCat("ALTER VIEW ", Display(relation), " RENAME");
        break;
      case pg_query::OBJECT_MATVIEW:
        if (!existing) {
          created_.Add({relation.schema, rename.newname()});
          return;
        }
        what = absl::StrCat("ALTER MATERIALIZED VIEW ", Display(relation), " RENAME");
        break;
      default:
        // Other renames (index, sequence, function, …) take weaker locks or
        // none on a table.
        return;
    }
    CheckLockTimeout(what, line);
  }

  void LintDrop(const pg_query::DropStmt& drop, int line) {
    std::string kind;
    switch (drop.remove_type()) {
      case pg_query::OBJECT_TABLE:
        kind = "TABLE";
        break;
      case pg_query::OBJECT_MATVIEW:
        kind = "MATERIALIZED VIEW";
        break;
      case pg_query::OBJECT_INDEX:
        if (drop.concurrent()) return;
        kind = "INDEX";
        break;
      default:
        return;
    }
    std::vector<std::string> existing;
    for (const pg_query::Node& object : drop.objects()) {
      const RelationName relation = NameOfDropObject(object);
      if (!created_.Contains(relation)) existing.push_back(Display(relation));
    }
    if (existing.empty()) return;
    const std::string names = absl::StrJoin(existing, ", ");
    if (drop.remove_type() == pg_query::OBJECT_TABLE && !breaking_) {
      Add(LintSeverity::kError, "drop-table-not-breaking", line,
          absl::StrCat("DROP TABLE ", names,
                       " in a migration not marked `-- schemagate:breaking`: schemagate applies "
                       "it while instances built before it still run, and every query of "
                       "theirs on it fails"),
          ContractFix(
              existing.size() == 1 ? absl::StrCat("table ", names) : absl::StrCat("tables ", names),
              "drop it"));
    }
    CheckLockTimeout(absl::StrCat("DROP ", kind, " ", names), line);
  }

  void LintReindex(const pg_query::ReindexStmt& reindex, int line) {
    if (OptionIsOn(reindex.params(), "concurrently")) return;
    std::string target;
    switch (reindex.kind()) {
      case pg_query::REINDEX_OBJECT_INDEX:
      case pg_query::REINDEX_OBJECT_TABLE:
        if (created_.Contains(reindex.relation())) return;
        target = Display(NameOf(reindex.relation()));
        break;
      default:
        target = reindex.name().empty() ? "(every table)" : reindex.name();
        break;
    }
    CheckLockTimeout(absl::StrCat("REINDEX ", target), line);
  }

  void LintVacuum(const pg_query::VacuumStmt& vacuum, int line) {
    if (!vacuum.is_vacuumcmd() || !OptionIsOn(vacuum.options(), "full")) return;
    if (vacuum.rels().empty()) {
      CheckLockTimeout("VACUUM FULL (every table)", line);
      return;
    }
    std::vector<std::string> existing;
    for (const pg_query::Node& node : vacuum.rels()) {
      if (!node.has_vacuum_relation()) continue;
      const pg_query::RangeVar& relation = node.vacuum_relation().relation();
      if (!created_.Contains(relation)) existing.push_back(Display(NameOf(relation)));
    }
    if (!existing.empty()) {
      CheckLockTimeout(absl::StrCat("VACUUM FULL ", absl::StrJoin(existing, ", ")), line);
    }
  }

  // For statements that lock a list of relations (TRUNCATE, LOCK TABLE).
  void LintRelationsLocked(absl::string_view what, const NodeList& relations, int line) {
    std::vector<std::string> existing;
    for (const pg_query::Node& node : relations) {
      if (node.has_range_var() && !created_.Contains(node.range_var())) {
        existing.push_back(Display(NameOf(node.range_var())));
      }
    }
    if (!existing.empty()) {
      CheckLockTimeout(absl::StrCat(what, " on ", absl::StrJoin(existing, ", ")), line);
    }
  }

  // An UPDATE or DELETE of every row of a table the application uses: one
  // transaction holds every row's lock until the migration commits.
  void LintWholeTableWrite(absl::string_view verb, const pg_query::RangeVar& relation, int line) {
    if (created_.Contains(relation)) return;
    const std::string table = Display(NameOf(relation));
    const bool update = verb == "UPDATE";
    const std::string statement =
        update ? absl::StrCat("UPDATE ", table, " SET ...") : absl::StrCat("DELETE FROM ", table);
    Add(LintSeverity::kWarning, update ? "update-without-where" : "delete-without-where", line,
        absl::StrCat(statement, " without WHERE ", update ? "rewrites" : "deletes",
                     " every row of ", table,
                     " in one transaction: each row stays locked until the migration commits, so "
                     "the application's writes to any row of ",
                     table, " wait (minutes on a large table), and ",
                     update ? "the table and its indexes grow by a whole copy until vacuum"
                            : "vacuum has the whole table to reclaim afterwards"),
        absl::StrCat(
            "work in batches that commit as they go, in a migration of its own marked `-- "
            "schemagate:no-transaction`: `DO $$ BEGIN LOOP ",
            update ? absl::StrCat("UPDATE ", table, " SET ... WHERE id IN (SELECT id FROM ", table,
                                  " WHERE <not yet updated> LIMIT 5000)")
                   : absl::StrCat("DELETE FROM ", table, " WHERE id IN (SELECT id FROM ", table,
                                  " LIMIT 5000)"),
            "; EXIT WHEN NOT FOUND; COMMIT; END LOOP; END $$;` (or run the backfill as a job "
            "outside migrations)"));
  }

  // `what` takes ACCESS EXCLUSIVE on a relation the application uses. The
  // statement itself may be quick; the harm is the wait: queued behind a long
  // query, it makes every later query on the table (reads too) queue behind it.
  // One finding per file (one directive fixes them all), at the first such
  // statement; FinishLockTimeout names the others.
  void CheckLockTimeout(absl::string_view what, int line) {
    if (no_lock_timeout_reason_.empty()) return;
    if (locked_.empty()) {
      lock_timeout_finding_ = findings_.size();
      Add(LintSeverity::kWarning, "access-exclusive-without-lock-timeout", line, "",
          "add `-- schemagate:lock-timeout=5s` to the migration's leading comments: a waiting "
          "lock then gives up after 5s instead of stalling the application, and schemagated "
          "retries the migration with backoff");
    }
    locked_.push_back({std::string(what), line});
  }

  void FinishLockTimeout() {
    if (locked_.empty()) return;
    std::string others;
    for (size_t i = 1; i < locked_.size(); ++i) {
      absl::StrAppend(&others, i == 1 ? "" : "; ", "line ", locked_[i].line, ": ",
                      locked_[i].what);
    }
    findings_[lock_timeout_finding_].message = absl::StrCat(
        locked_[0].what, " takes an ACCESS EXCLUSIVE lock with no lock_timeout (",
        no_lock_timeout_reason_, ")",
        locked_.size() == 1
            ? ""
            : absl::StrCat(", and so do ", locked_.size() - 1, " more statement(s) of this file (",
                           others, ")"),
        ": while it waits behind any long-running query or idle transaction, every query of "
        "the application on that table, reads included, queues behind it");
  }

  // A view under a renamed table's old name keeps instances built before the
  // rename working (the expand half of a rename), so the rename breaks no one.
  void WithdrawRenameUnderView(const RelationName& view) {
    for (const RenamedTable& renamed : renamed_tables_) {
      if (SameRelation(renamed.old_name, view)) withdrawn_.insert(renamed.finding);
    }
  }

  void Add(LintSeverity severity, std::string rule, int line, std::string message,
           std::string fix) {
    // A rule missing from kLintRules could not be named by lint-ignore.
    if (!IsLintRule(rule)) std::abort();
    LintFinding finding;
    finding.path = script_.path;
    finding.line = line;
    finding.severity = severity;
    finding.rule = std::move(rule);
    finding.message = std::move(message);
    finding.fix = std::move(fix);
    findings_.push_back(std::move(finding));
  }

  const MigrationScript& script_;
  const bool breaking_;
  // Why no lock_timeout applies to this migration; empty if one does.
  std::string no_lock_timeout_reason_;
  CreatedRelations created_;
  struct RenamedTable {
    RelationName old_name;
    size_t finding;  // Index of its rename-table-not-breaking error.
  };
  std::vector<RenamedTable> renamed_tables_;
  std::set<size_t> withdrawn_;
  // Statements that take ACCESS EXCLUSIVE with no lock_timeout, and the
  // index of their one finding.
  struct Locked {
    std::string what;
    int line;
  };
  std::vector<Locked> locked_;
  size_t lock_timeout_finding_ = 0;
  std::vector<LintFinding> findings_;
};

}  // namespace

const char* LintSeverityName(LintSeverity severity) {
  return severity == LintSeverity::kError ? "error" : "warning";
}

std::vector<LintFinding> LintMigration(const MigrationScript& up, const LintOptions& options) {
  return MigrationLinter(up, options).Run();
}

bool HasErrors(const std::vector<LintFinding>& findings) {
  for (const LintFinding& finding : findings) {
    if (finding.severity == LintSeverity::kError) return true;
  }
  return false;
}

std::string FormatFinding(const LintFinding& finding) {
  return absl::StrCat(finding.path, ":", finding.line, ": ", LintSeverityName(finding.severity),
                      finding.waived.empty() ? "" : absl::StrCat(" (waived: ", finding.waived, ")"),
                      ": ", finding.message, " [", finding.rule, "]\n    fix: ", finding.fix);
}

}  // namespace schemagate
