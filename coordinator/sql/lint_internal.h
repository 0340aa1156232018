// The linter's machinery, shared by lint.cc (statements, renames, drops,
// locks) and lint_alter.cc (ALTER TABLE): parse-tree helpers and the
// per-migration MigrationLinter. Internal to coordinator/sql/.
#ifndef SCHEMAGATE_COORDINATOR_SQL_LINT_INTERNAL_H_
#define SCHEMAGATE_COORDINATOR_SQL_LINT_INTERNAL_H_

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
#include "coordinator/sql/lint.h"
#include "pg_query.pb.h"

namespace schemagate {
namespace lint_internal {

using NodeList = google::protobuf::RepeatedPtrField<pg_query::Node>;

// A relation as the SQL names it; an empty schema means "found through the
// search_path".
struct RelationName {
  std::string schema;
  std::string name;
};

inline RelationName NameOf(const pg_query::RangeVar& range_var) {
  return {range_var.schemaname(), range_var.relname()};
}

inline std::string Display(const RelationName& relation) {
  return relation.schema.empty() ? relation.name
                                 : absl::StrCat(relation.schema, ".", relation.name);
}

// The linter cannot resolve the search_path, so an unqualified name matches
// the same name in any schema: rarely wrong, and wrong only by staying quiet.
inline bool SameRelation(const RelationName& a, const RelationName& b) {
  return a.name == b.name && (a.schema.empty() || b.schema.empty() || a.schema == b.schema);
}

// The fix for a change that breaks instances built before it.
inline std::string ContractFix(absl::string_view old_thing, absl::string_view contract_step) {
  return absl::StrCat(
      "expand/contract: first deploy an application version that no longer uses ", old_thing,
      "; then ", contract_step,
      " in a contract migration marked `-- schemagate:breaking` (this one, if it does nothing "
      "else), which schemagate applies only once no running instance still uses ",
      old_thing);
}

// DROP names its objects as lists of strings: [name], [schema, name] or
// [catalog, schema, name].
inline RelationName NameOfDropObject(const pg_query::Node& object) {
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
inline bool OptionIsOn(const NodeList& options, absl::string_view name) {
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
inline bool TakesAccessExclusive(const pg_query::AlterTableCmd& cmd) {
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

inline bool IsSerialType(const pg_query::TypeName& type_name) {
  if (type_name.names().empty() || !type_name.names().rbegin()->has_string()) return false;
  const std::string name = absl::AsciiStrToLower(type_name.names().rbegin()->string().sval());
  return name == "serial" || name == "serial4" || name == "bigserial" || name == "serial8" ||
         name == "smallserial" || name == "serial2";
}

// Lints one migration's up script, statement by statement in file order.
class MigrationLinter {
 public:
  MigrationLinter(const MigrationScript& up, const LintOptions& options);

  std::vector<LintFinding> Run();

 private:
  void LintStatement(const SqlStatement& statement);

  void LintNode(const pg_query::Node& node, int line);

  void LintIndex(const pg_query::IndexStmt& index, int line);

  void LintAlterTable(const pg_query::AlterTableStmt& alter, int line);

  void LintAddColumn(const RelationName& table, const pg_query::ColumnDef& column, int line);

  void LintAddConstraint(const RelationName& table, const pg_query::Constraint& constraint,
                         int line);

  void AddConstraintBuildsIndex(const RelationName& table, absl::string_view kind,
                                absl::string_view column, int line);

  void LintRename(const pg_query::RenameStmt& rename, int line);

  void LintDrop(const pg_query::DropStmt& drop, int line);

  void LintReindex(const pg_query::ReindexStmt& reindex, int line);

  void LintVacuum(const pg_query::VacuumStmt& vacuum, int line);

  // For statements that lock a list of relations (TRUNCATE, LOCK TABLE).
  void LintRelationsLocked(absl::string_view what, const NodeList& relations, int line);

  // An UPDATE or DELETE of every row of a table the application uses: one
  // transaction holds every row's lock until the migration commits.
  void LintWholeTableWrite(absl::string_view verb, const pg_query::RangeVar& relation, int line);

  // `what` takes ACCESS EXCLUSIVE on a relation the application uses. The
  // statement itself may be quick; the harm is the wait: queued behind a long
  // query, it makes every later query on the table (reads too) queue behind it.
  // One finding per file (one directive fixes them all), at the first such
  // statement; FinishLockTimeout names the others.
  void CheckLockTimeout(absl::string_view what, int line);

  void FinishLockTimeout();

  // A view under a renamed table's old name keeps instances built before the
  // rename working (the expand half of a rename), so the rename breaks no one.
  void WithdrawRenameUnderView(const RelationName& view);

  void Add(LintSeverity severity, std::string rule, int line, std::string message, std::string fix);

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

}  // namespace lint_internal
}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SQL_LINT_INTERNAL_H_
