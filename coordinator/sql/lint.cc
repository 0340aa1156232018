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
#include "coordinator/sql/lint_internal.h"
#include "coordinator/sql/lint_rules.h"
#include "pg_query.h"
#include "pg_query.pb.h"

namespace schemagate {
namespace lint_internal {

MigrationLinter::MigrationLinter(const MigrationScript& up, const LintOptions& options)
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

std::vector<LintFinding> MigrationLinter::Run() {
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

void MigrationLinter::LintStatement(const SqlStatement& statement) {
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

void MigrationLinter::LintNode(const pg_query::Node& node, int line) {
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
            absl::StrCat("REFRESH MATERIALIZED VIEW ", Display(NameOf(refresh.relation()))), line);
      }
      break;
    }
    default:
      break;
  }
}

void MigrationLinter::LintIndex(const pg_query::IndexStmt& index, int line) {
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

void MigrationLinter::LintRename(const pg_query::RenameStmt& rename, int line) {
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
      } else {
        Add(LintSeverity::kWarning, "rename-table-marked-breaking", line,
            absl::StrCat("ALTER TABLE ", Display(relation), " RENAME TO ", rename.newname(),
                         " marked breaking: schemagate holds it back while instances that use ",
                         Display(relation), " run, but the release that uses ", rename.newname(),
                         " cannot start before it is applied (an app's required version skips "
                         "breaking migrations)"),
            absl::StrCat("do the rename in a migration not marked breaking and keep the old "
                         "name as `CREATE VIEW ",
                         Display(relation), " AS SELECT * FROM ", rename.newname(),
                         "`; drop the view in a later migration marked breaking "
                         "(docs/safe-migrations.md)"));
        renamed_tables_.push_back({relation, findings_.size() - 1});
      }
      break;
    case pg_query::OBJECT_COLUMN: {
      if (rename.relation_type() != pg_query::OBJECT_TABLE || !existing) return;
      const std::string renamed = absl::StrCat("ALTER TABLE ", Display(relation), " RENAME COLUMN ",
                                               rename.subname(), " TO ", rename.newname());
      // Marking it breaking only moves the failure to the new release: the
      // fix is the same expand/contract either way.
      std::string fix = absl::StrCat(
          "expand/contract: add column ", rename.newname(),
          " instead, write both columns (application or trigger) and backfill, deploy an "
          "application that uses only ",
          rename.newname(), ", then drop ", rename.subname(),
          " in a contract migration marked `-- schemagate:breaking`, which schemagate applies "
          "only once no running instance still uses it (docs/safe-migrations.md)");
      if (!breaking_) {
        Add(LintSeverity::kError, "rename-column-not-breaking", line,
            absl::StrCat(renamed,
                         " in a migration not marked `-- schemagate:breaking`: schemagate "
                         "applies it while instances built before it still run, and every "
                         "query of theirs that uses column ",
                         rename.subname(), " fails"),
            std::move(fix));
      } else {
        Add(LintSeverity::kWarning, "rename-column-marked-breaking", line,
            absl::StrCat(renamed, " marked breaking: schemagate holds it back while instances "
                         "that use ", rename.subname(), " run, but the release that uses ",
                         rename.newname(),
                         " cannot start before it is applied (an app's required version skips "
                         "breaking migrations), so one of the two releases fails either way"),
            std::move(fix));
      }
      break;
    }
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

void MigrationLinter::LintDrop(const pg_query::DropStmt& drop, int line) {
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

void MigrationLinter::LintReindex(const pg_query::ReindexStmt& reindex, int line) {
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

void MigrationLinter::LintVacuum(const pg_query::VacuumStmt& vacuum, int line) {
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

void MigrationLinter::LintRelationsLocked(absl::string_view what, const NodeList& relations,
                                          int line) {
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

void MigrationLinter::LintWholeTableWrite(absl::string_view verb,
                                          const pg_query::RangeVar& relation, int line) {
  if (created_.Contains(relation)) return;
  const std::string table = Display(NameOf(relation));
  const bool update = verb == "UPDATE";
  const std::string statement =
      update ? absl::StrCat("UPDATE ", table, " SET ...") : absl::StrCat("DELETE FROM ", table);
  Add(LintSeverity::kWarning, update ? "update-without-where" : "delete-without-where", line,
      absl::StrCat(statement, " without WHERE ", update ? "rewrites" : "deletes", " every row of ",
                   table,
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

void MigrationLinter::CheckLockTimeout(absl::string_view what, int line) {
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

void MigrationLinter::FinishLockTimeout() {
  if (locked_.empty()) return;
  std::string others;
  for (size_t i = 1; i < locked_.size(); ++i) {
    absl::StrAppend(&others, i == 1 ? "" : "; ", "line ", locked_[i].line, ": ", locked_[i].what);
  }
  findings_[lock_timeout_finding_].message = absl::StrCat(
      locked_[0].what, " takes an ACCESS EXCLUSIVE lock with no lock_timeout (",
      no_lock_timeout_reason_, ")",
      locked_.size() == 1 ? ""
                          : absl::StrCat(", and so do ", locked_.size() - 1,
                                         " more statement(s) of this file (", others, ")"),
      ": while it waits behind any long-running query or idle transaction, every query of "
      "the application on that table, reads included, queues behind it");
}

void MigrationLinter::WithdrawRenameUnderView(const RelationName& view) {
  for (const RenamedTable& renamed : renamed_tables_) {
    if (SameRelation(renamed.old_name, view)) withdrawn_.insert(renamed.finding);
  }
}

void MigrationLinter::Add(LintSeverity severity, std::string rule, int line, std::string message,
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

}  // namespace lint_internal

using lint_internal::MigrationLinter;

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
