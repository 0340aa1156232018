#include "ctl/verify.h"

#include <algorithm>
#include <pqxx/pqxx>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "coordinator/base/conninfo.h"
#include "coordinator/base/status_macros.h"
#include "ctl/render.h"

namespace schemagate {
namespace {

// libpq's message without "ERROR:  " and the LINE/caret context.
std::string CleanMessage(const char* what) {
  absl::string_view text(what);
  absl::ConsumePrefix(&text, "ERROR:  ");
  absl::ConsumePrefix(&text, "FATAL:  ");
  const size_t newline = text.find('\n');
  if (newline != absl::string_view::npos) text = text.substr(0, newline);
  return RedactSecrets(absl::StripAsciiWhitespace(text));
}

// SQLSTATE class 08 (connection exception) and 57P0x (shutdown).
bool IsConnectionLoss(const std::string& sqlstate) {
  return absl::StartsWith(sqlstate, "08") || absl::StartsWith(sqlstate, "57P0");
}

absl::Status Unavailable(const std::exception& e) {
  return absl::UnavailableError(
      absl::StrCat("scratch database unavailable: ", CleanMessage(e.what())));
}

std::string Millis(absl::Duration d) {
  return absl::StrCat(absl::ToInt64Milliseconds(d), "ms");
}

// Every line of `text` indented by four spaces.
std::string Indent(absl::string_view text) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(absl::StripTrailingAsciiWhitespace(text), '\n')) {
    absl::StrAppend(&out, "    ", line, "\n");
  }
  return out;
}

// Refuses a database that is not a scratch one: user tables, or
// schemagate's bookkeeping schema (a managed database whose migrations
// verify would apply behind the coordinator's back).
absl::Status CheckScratch(pqxx::connection& conn, const VerifyOptions& options) {
  if (options.allow_non_empty) return absl::OkStatus();
  pqxx::nontransaction tx(conn);
  const pqxx::result tables = tx.exec_params(
      "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c"
      " JOIN pg_namespace n ON n.oid = c.relnamespace"
      " WHERE c.relkind IN ('r', 'p', 'f') AND n.nspname <> $1"
      " AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"
      " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass"
      " AND d.objid = c.oid AND d.deptype = 'e') ORDER BY 1",
      options.bookkeeping_schema);
  const bool bookkeeping =
      tx.exec_params1("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                      options.bookkeeping_schema)[0]
          .as<bool>();
  const std::string database = tx.exec1("SELECT current_database()")[0].as<std::string>();
  if (!tables.empty()) {
    std::vector<std::string> names;
    for (size_t i = 0; i < tables.size() && i < 3; ++i) {
      names.push_back(tables[i][0].as<std::string>());
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "database \"", database, "\" is not a scratch database: it already holds ",
        tables.size(), " user table", tables.size() == 1 ? "" : "s", " (",
        absl::StrJoin(names, ", "), tables.size() > 3 ? ", ..." : "",
        "); verify applies and rolls back every migration, so point it at an empty database "
        "(createdb), or pass --allow-non-empty to verify on this one anyway"));
  }
  if (bookkeeping) {
    return absl::FailedPreconditionError(absl::StrCat(
        "database \"", database, "\" holds schemagate's bookkeeping schema \"",
        options.bookkeeping_schema,
        "\": it is a managed database, not a scratch one; verify would apply migrations "
        "behind the coordinator's back. Point it at an empty database (createdb), or pass "
        "--allow-non-empty to verify on this one anyway"));
  }
  return absl::OkStatus();
}

// Runs one script the way a coordinator does. An SQL error of the script is
// the optional value; a lost connection is the status.
absl::StatusOr<std::optional<StatementError>> ApplyScript(pqxx::connection& conn,
                                                          const MigrationScript& script,
                                                          const std::string& step) {
  int current = -1;
  try {
    if (script.transactional()) {
      pqxx::work tx(conn);
      for (size_t i = 0; i < script.statements.size(); ++i) {
        current = static_cast<int>(i);
        tx.exec(script.statements[i].text);
      }
      current = -1;
      tx.commit();
    } else {
      for (size_t i = 0; i < script.statements.size(); ++i) {
        current = static_cast<int>(i);
        pqxx::nontransaction tx(conn);
        tx.exec(script.statements[i].text);
      }
    }
    return std::optional<StatementError>();
  } catch (const pqxx::broken_connection& e) {
    return Unavailable(e);
  } catch (const pqxx::in_doubt_error& e) {
    return Unavailable(e);
  } catch (const pqxx::sql_error& e) {
    if (IsConnectionLoss(e.sqlstate()) || !conn.is_open()) return Unavailable(e);
    StatementError error;
    error.step = step;
    error.path = script.path;
    if (current >= 0) {
      error.line = script.statements[current].line;
      error.statement_index = current + 1;
    }
    error.sqlstate = e.sqlstate();
    error.message = CleanMessage(e.what());
    return std::optional<StatementError>(std::move(error));
  } catch (const std::exception& e) {
    if (!conn.is_open()) return Unavailable(e);
    return absl::InternalError(
        absl::StrCat("applying ", script.path, ": ", CleanMessage(e.what())));
  }
}

class Verifier {
 public:
  Verifier(pqxx::connection* conn, const std::string& url, const VerifyOptions& options,
           const VerifyProgress& progress)
      : conn_(conn), describer_(url, options.bookkeeping_schema), options_(options),
        progress_(progress) {}

  absl::StatusOr<SchemaDescription> Describe() { return describer_.Describe(); }

  // Notes how to bring the scratch database back to `initial`, its schema
  // before the first migration: only a database that holds nothing but
  // schemas (and extensions in pg_catalog) is rebuilt, and never one that
  // --allow-non-empty let in, since a rebuild drops every user schema.
  absl::Status PrepareRebuild(const SchemaDescription& initial) {
    initial_ = initial;
    if (options_.allow_non_empty) {
      no_rebuild_ = "a database passed with --allow-non-empty is never rebuilt";
      return absl::OkStatus();
    }
    for (const std::string& line : initial.lines) {
      const bool schema = absl::StartsWith(line, "schema ");
      const bool builtin_extension =
          absl::StartsWith(line, "extension ") && absl::EndsWith(line, " schema pg_catalog");
      if (!schema && !builtin_extension) {
        no_rebuild_ = "the scratch database held objects before the first migration, so it is "
                      "not rebuilt";
        return absl::OkStatus();
      }
    }
    try {
      pqxx::nontransaction tx(*conn_);
      // How to create each user schema again as it is now: owner, grants
      // (the owner's own are implicit), comment.
      const pqxx::result restore = tx.exec_params(
          "SELECT format('CREATE SCHEMA %I AUTHORIZATION %I', n.nspname,"
          " pg_get_userbyid(n.nspowner)), 0 AS step, n.nspname FROM pg_namespace n"
          " WHERE n.nspname <> $1 AND n.nspname NOT LIKE 'pg\\_%' AND"
          " n.nspname <> 'information_schema'"
          " UNION ALL SELECT format('GRANT %s ON SCHEMA %I TO %s', a.privilege_type, n.nspname,"
          " CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee))"
          " END), 1, n.nspname FROM pg_namespace n, aclexplode(n.nspacl) a"
          " WHERE a.grantee <> n.nspowner AND n.nspname <> $1 AND n.nspname NOT LIKE 'pg\\_%'"
          " AND n.nspname <> 'information_schema'"
          " UNION ALL SELECT format('COMMENT ON SCHEMA %I IS %L', n.nspname, d.description), 2,"
          " n.nspname FROM pg_namespace n JOIN pg_description d ON d.objoid = n.oid AND"
          " d.classoid = 'pg_namespace'::regclass WHERE n.nspname <> $1 AND"
          " n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"
          " ORDER BY 3, 2, 1",
          options_.bookkeeping_schema);
      for (const pqxx::row& row : restore) restore_sql_.push_back(row[0].as<std::string>());
      for (const pqxx::row& row : tx.exec("SELECT extname FROM pg_extension")) {
        initial_extensions_.push_back(row[0].as<std::string>());
      }
    } catch (const std::exception& e) {
      return Unavailable(e);
    }
    return absl::OkStatus();
  }

  // After a down that left the database where the up cannot run again:
  // drops every user schema and extension a migration made, creates the
  // schemas that were there before the first migration again, applies the
  // ups of `ups` in order and checks that this gives `expected` (the schema
  // after the last one's first up). "" when the database is back there,
  // else why it could not be done; the status is an error only for a lost
  // connection.
  absl::StatusOr<std::string> Rebuild(const std::vector<const Migration*>& ups,
                                      const SchemaDescription& expected) {
    if (!no_rebuild_.empty()) return no_rebuild_;
    try {
      pqxx::nontransaction tx(*conn_);
      for (const pqxx::row& row : tx.exec("SELECT extname FROM pg_extension")) {
        const std::string name = row[0].as<std::string>();
        if (std::find(initial_extensions_.begin(), initial_extensions_.end(), name) ==
            initial_extensions_.end()) {
          tx.exec(absl::StrCat("DROP EXTENSION IF EXISTS ", tx.quote_name(name), " CASCADE"));
        }
      }
      const pqxx::result schemas = tx.exec_params(
          "SELECT nspname FROM pg_namespace WHERE nspname <> $1 AND nspname NOT LIKE 'pg\\_%'"
          " AND nspname <> 'information_schema'",
          options_.bookkeeping_schema);
      for (const pqxx::row& row : schemas) {
        tx.exec(absl::StrCat("DROP SCHEMA ", tx.quote_name(row[0].as<std::string>()), " CASCADE"));
      }
      for (const std::string& sql : restore_sql_) tx.exec(sql);
    } catch (const pqxx::sql_error& e) {
      if (IsConnectionLoss(e.sqlstate()) || !conn_->is_open()) return Unavailable(e);
      return absl::StrCat("resetting the scratch database failed: ", CleanMessage(e.what()),
                          " (SQLSTATE ", e.sqlstate(), ")");
    } catch (const std::exception& e) {
      return Unavailable(e);
    }
    ASSIGN_OR_RETURN(SchemaDescription reset, Describe());
    if (reset != initial_) {
      return std::string("the reset scratch database differs from the one verify started on");
    }
    for (const Migration* m : ups) {
      ASSIGN_OR_RETURN(std::optional<StatementError> error, ApplyScript(*conn_, m->up, "replay"));
      if (error) return absl::StrCat("replaying the ups failed: ", error->ToString());
    }
    ASSIGN_OR_RETURN(SchemaDescription replayed, Describe());
    if (replayed != expected) {
      return std::string("replaying the ups gave another schema than verifying them did");
    }
    return std::string();
  }

  void Say(const MigrationVerdict& v, absl::string_view what) {
    if (progress_) {
      progress_(absl::StrCat(v.label, ": ", absl::StripTrailingAsciiWhitespace(what)));
    }
  }

  // Verifies `m`, starting from the schema `before` (the schema the
  // database has now). On return `before` is the schema after `m`'s up;
  // `*stop` says why the next migrations cannot run ("" if they can).
  // `*after_up` is the schema after the first up, and `*down_broke` says
  // that the down left the database where the up cannot run on (a Rebuild
  // can bring it back).
  absl::Status Verify(const Migration& m, SchemaDescription* before, MigrationVerdict* v,
                      std::string* stop, SchemaDescription* after_up_out, bool* down_broke) {
    *down_broke = false;
    v->ran = true;
    absl::Time start = absl::Now();
    ASSIGN_OR_RETURN(std::optional<StatementError> up_error, ApplyScript(*conn_, m.up, "up"));
    v->up_duration = absl::Now() - start;
    if (up_error) {
      v->error = std::move(up_error);
      Say(*v, absl::StrCat("up FAILED: ", v->error->ToString()));
      *stop = absl::StrCat(v->label, "'s up failed");
      return absl::OkStatus();
    }
    v->up_ok = true;
    ASSIGN_OR_RETURN(SchemaDescription after_up, Describe());
    *after_up_out = after_up;
    v->up_changes_schema = after_up != *before;
    Say(*v, absl::StrCat("up ok (", Millis(v->up_duration), ")",
                         v->up_changes_schema ? "" : ", schema unchanged"));

    if (!m.down) {
      v->down = DownCheck::kNoDown;
      Say(*v, "no down file (warning: it cannot be rolled back)");
      *before = std::move(after_up);
      return absl::OkStatus();
    }

    start = absl::Now();
    ASSIGN_OR_RETURN(std::optional<StatementError> down_error,
                     ApplyScript(*conn_, *m.down, "down"));
    v->down_duration = absl::Now() - start;
    if (down_error) {
      v->down = DownCheck::kError;
      v->error = std::move(down_error);
      Say(*v, absl::StrCat("down FAILED: ", v->error->ToString()));
      // A transactional down rolled back: the database is as the up left
      // it and the next migration can go on. A no-transaction one may have
      // stopped halfway.
      ASSIGN_OR_RETURN(SchemaDescription now, Describe());
      if (now != after_up) {
        *stop = absl::StrCat(v->label,
                             "'s failed down left the schema half rolled back");
        *down_broke = true;
      }
      *before = std::move(now);
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(SchemaDescription after_down, Describe());
    if (after_down == *before) {
      v->down = DownCheck::kUndoes;
      Say(*v, absl::StrCat("down undoes up (", Millis(v->down_duration), ")"));
    } else {
      v->down = DownCheck::kDiffers;
      v->down_diff = DiffSchemas(*before, after_down);
      v->down_diff_text =
          FormatSchemaDiff(v->down_diff, absl::StrCat("before ", v->label, " up"),
                           absl::StrCat("after ", v->label, " down"), options_.max_diff_lines);
      Say(*v, absl::StrCat("down does NOT undo up:\n", v->down_diff_text));
    }

    // Up again, so the next migration starts from the schema it expects.
    ASSIGN_OR_RETURN(std::optional<StatementError> again_error,
                     ApplyScript(*conn_, m.up, "up again"));
    if (again_error) {
      if (!v->error) v->error = std::move(again_error);
      Say(*v, absl::StrCat("up FAILED after the down: ", v->error->ToString()));
      *stop = absl::StrCat(v->label, "'s up failed when applied again after its down");
      *down_broke = true;
      ASSIGN_OR_RETURN(*before, Describe());
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(SchemaDescription again, Describe());
    if (again != after_up) {
      v->reapply_differs = true;
      v->reapply_diff_text = FormatSchemaDiff(
          DiffSchemas(after_up, again), absl::StrCat("after ", v->label, " up"),
          absl::StrCat("after ", v->label, " up, down, up"), options_.max_diff_lines);
      Say(*v, absl::StrCat("up after down gives another schema than the first up:\n",
                           v->reapply_diff_text));
    }
    *before = std::move(again);
    return absl::OkStatus();
  }

 private:
  pqxx::connection* conn_;
  // A second connection: descriptions run in their own snapshot, between
  // the scripts (never inside a migration's transaction).
  SchemaDescriber describer_;
  // Set by PrepareRebuild: the schema before the first migration, the SQL
  // that creates its schemas again, the extensions it had; or why the
  // database is never rebuilt.
  SchemaDescription initial_;
  std::vector<std::string> restore_sql_;
  std::vector<std::string> initial_extensions_;
  std::string no_rebuild_;
  const VerifyOptions& options_;
  const VerifyProgress& progress_;
};

}  // namespace

const char* DownCheckName(DownCheck check) {
  switch (check) {
    case DownCheck::kNotRun: return "not run";
    case DownCheck::kUndoes: return "undoes";
    case DownCheck::kDiffers: return "differs";
    case DownCheck::kNoDown: return "no down";
    case DownCheck::kError: return "error";
  }
  return "?";
}

std::string StatementError::ToString() const {
  std::string where = path;
  if (line > 0) {
    absl::StrAppend(&where, ":", line);
  } else {
    absl::StrAppend(&where, " (at COMMIT)");
  }
  return absl::StrCat(where, ": ", message, " (SQLSTATE ", sqlstate, ") [", step, "]");
}

int VerifyReport::NoDownCount() const {
  int n = 0;
  for (const MigrationVerdict& v : migrations) n += v.down == DownCheck::kNoDown ? 1 : 0;
  return n;
}

absl::StatusOr<VerifyReport> VerifyMigrations(const MigrationSet& set,
                                              const std::string& scratch_url,
                                              const VerifyOptions& options,
                                              const VerifyProgress& progress) {
  std::unique_ptr<pqxx::connection> conn;
  try {
    conn = std::make_unique<pqxx::connection>(WithKeepalives(scratch_url));
    pqxx::nontransaction(*conn).exec("SET application_name = 'schemagate-verify'");
    RETURN_IF_ERROR(CheckScratch(*conn, options));
  } catch (const std::exception& e) {
    return Unavailable(e);
  }

  VerifyReport report;
  Verifier verifier(conn.get(), scratch_url, options, progress);
  ASSIGN_OR_RETURN(SchemaDescription schema, verifier.Describe());
  RETURN_IF_ERROR(verifier.PrepareRebuild(schema));
  std::vector<const Migration*> applied;
  for (const Migration& m : set.migrations()) {
    MigrationVerdict v;
    v.version = m.version;
    v.name = m.name;
    v.label = m.Label();
    v.transactional = m.transactional();
    if (report.stopped.empty()) {
      applied.push_back(&m);
      SchemaDescription after_up;
      bool down_broke = false;
      RETURN_IF_ERROR(
          verifier.Verify(m, &schema, &v, &report.stopped, &after_up, &down_broke));
      // A bad down is reported, and the later migrations are still checked:
      // the database is rebuilt to where this up left it.
      if (down_broke) {
        ASSIGN_OR_RETURN(std::string why_not, verifier.Rebuild(applied, after_up));
        if (why_not.empty()) {
          v.rebuilt = true;
          schema = std::move(after_up);
          report.stopped.clear();
          if (progress) {
            progress(absl::StrCat(v.label, ": rebuilt the scratch database (schemas dropped, ",
                                  applied.size(), " up(s) applied again) to verify the rest"));
          }
        } else {
          absl::StrAppend(&report.stopped, " (", why_not, ")");
        }
      }
    }
    if (v.failed() && report.first_failure == 0) report.first_failure = v.version;
    report.migrations.push_back(std::move(v));
  }
  report.final_schema = std::move(schema);
  if (progress) {
    progress(absl::StrCat("verified ", report.migrations.size(), " migrations: ",
                          report.ok() ? "ok" : "FAILED"));
  }
  return report;
}

absl::StatusOr<VerifyReport> VerifyMigrations(const MigrationSet& set,
                                              const std::string& scratch_url,
                                              const VerifyProgress& progress) {
  return VerifyMigrations(set, scratch_url, VerifyOptions(), progress);
}

std::string FormatVerifyReport(const VerifyReport& report) {
  std::vector<std::vector<std::string>> rows = {{"VERSION", "NAME", "UP", "DOWN", "TIME"}};
  int failed = 0;
  for (const MigrationVerdict& v : report.migrations) {
    const char* up = !v.ran ? "-" : v.up_ok ? "ok" : "FAILED";
    std::string down = v.ran ? DownCheckName(v.down) : "-";
    if (v.reapply_differs) absl::StrAppend(&down, ", up again differs");
    rows.push_back({absl::StrCat(v.version), v.name, up, down,
                    v.ran ? Millis(v.up_duration + v.down_duration) : "-"});
    failed += v.failed() ? 1 : 0;
  }
  std::string out = FormatTable(rows);
  for (const MigrationVerdict& v : report.migrations) {
    if (!v.failed()) continue;
    absl::StrAppend(&out, "\n", v.label, ":\n");
    if (v.error) absl::StrAppend(&out, "  ", v.error->ToString(), "\n");
    if (v.down == DownCheck::kDiffers) {
      absl::StrAppend(&out, "  the down does not undo the up:\n", Indent(v.down_diff_text));
    }
    if (v.reapply_differs) {
      absl::StrAppend(&out, "  the up applied again after the down gives another schema:\n",
                      Indent(v.reapply_diff_text));
    }
    if (v.rebuilt) {
      absl::StrAppend(&out, "  to verify the migrations after it, the scratch database was "
                            "rebuilt: its schemas dropped and the ups up to this one applied "
                            "again\n");
    }
  }
  if (!report.stopped.empty()) {
    absl::StrAppend(&out, "\nstopped: ", report.stopped,
                    "; the migrations after it were not verified\n");
  }
  absl::StrAppend(&out, "\n", report.migrations.size(), " migrations, ", failed, " failed, ",
                  report.NoDownCount(), " without a down");
  if (!report.ok()) {
    std::vector<std::string> labels;
    for (const MigrationVerdict& v : report.migrations) {
      if (v.failed()) labels.push_back(v.label);
    }
    absl::StrAppend(&out, "; failed: ", absl::StrJoin(labels, ", "));
  }
  absl::StrAppend(&out, "\n");
  return out;
}

}  // namespace schemagate
