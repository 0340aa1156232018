#include "ctl/render.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "coordinator/engine/schema_description.h"
#include "google/protobuf/util/json_util.h"

namespace schemagate {

std::string ToJson(const google::protobuf::Message& message, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!pretty && !out.empty() && out.back() != '\n') out += '\n';
  return out;
}

std::string FormatTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string FormatDuration(const google::protobuf::Duration& d) {
  const int64_t ms = d.seconds() * 1000 + d.nanos() / 1000000;
  if (ms < 1000) return absl::StrCat(ms, "ms");
  if (ms < 60000) return absl::StrFormat("%.1fs", ms / 1000.0);
  return absl::StrFormat("%dm%02ds", ms / 60000, (ms / 1000) % 60);
}

std::string FormatTimestamp(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%SZ", absl::FromUnixSeconds(t.seconds()),
                          absl::UTCTimeZone());
}

std::string SetStateName(v1::SetState state) {
  switch (state) {
    case v1::CURRENT: return "CURRENT";
    case v1::BEHIND: return "BEHIND";
    case v1::RUNNING: return "RUNNING";
    case v1::SET_FAILED: return "FAILED";
    case v1::DIRTY: return "DIRTY";
    // The set disagrees with the database (an edited applied file, a
    // version missing from the set): the protobuf name, as JSON shows it.
    case v1::CONFLICT: return "CONFLICT";
    case v1::SET_BLOCKED: return "BLOCKED";
    case v1::SET_REFUSED: return "REFUSED";
    case v1::DATABASE_UNAVAILABLE: return "DATABASE_UNAVAILABLE";
    default: return "UNKNOWN";
  }
}

std::string MigrationStateName(v1::MigrationState state) {
  switch (state) {
    case v1::MIGRATION_PENDING: return "pending";
    case v1::MIGRATION_APPLIED: return "applied";
    case v1::MIGRATION_DIRTY: return "DIRTY";
    case v1::MIGRATION_CHECKSUM_MISMATCH: return "CHECKSUM MISMATCH";
    case v1::MIGRATION_MISSING_FROM_SET: return "MISSING FROM SET";
    case v1::MIGRATION_LAST_RUN_FAILED: return "FAILED";
    default: return "?";
  }
}

std::string RepeatableStateName(v1::RepeatableState state) {
  switch (state) {
    case v1::REPEATABLE_NEW: return "new";
    case v1::REPEATABLE_APPLIED: return "applied";
    case v1::REPEATABLE_CHANGED: return "changed";
    case v1::REPEATABLE_OLDER_FILE: return "older-file";
    case v1::REPEATABLE_MISSING_FROM_SET: return "missing-from-set";
    case v1::REPEATABLE_LAST_RUN_FAILED: return "last-run-failed";
    default: return "unknown";
  }
}

std::string RenderStatus(const v1::Status& s) {
  std::string out = absl::StrCat("state:        ", SetStateName(s.state()), "\n",
                                 "message:      ", s.message(), "\n",
                                 "schema:       version ", s.applied_version(), " of ",
                                 s.head_version(), " (", s.applied_count(), " applied, ",
                                 s.pending_count(), " pending)\n");
  if (s.dirty_versions_size() > 0) {
    absl::StrAppend(&out, "dirty:        ", absl::StrJoin(s.dirty_versions(), ", "), "\n");
  }
  if (s.has_failure()) {
    const v1::Failure& f = s.failure();
    absl::StrAppend(&out, "failure:      ",
                    f.repeatable() ? absl::StrCat("repeatable ", f.name())
                                   : absl::StrCat("version ", f.version(), " (", f.name(), ")"),
                    " [SQLSTATE ", f.sqlstate(), "] ", f.message(), "\n");
    if (f.statement_index() > 0) {
      absl::StrAppend(&out, "              at statement ", f.statement_index(), ", line ",
                      f.line(), ", ", FormatTimestamp(f.at()), " by ", f.coordinator_id(),
                      "\n");
    }
  }
  if (s.repeatables_size() > 0) {
    absl::StrAppend(&out, "repeatables:  ", s.repeatables_size(), " (", s.pending_repeatables(),
                    " to apply)\n");
    for (const v1::Repeatable& r : s.repeatables()) {
      const std::string& checksum = r.checksum().empty() ? r.applied_checksum() : r.checksum();
      absl::StrAppend(&out, "              ", r.name(), "  ", RepeatableStateName(r.state()),
                      "  ", checksum.substr(0, 12), "  applied ",
                      r.applied_checksum().empty() ? "never" : FormatTimestamp(r.applied_at()),
                      "\n");
    }
  }
  for (const std::string& conflict : s.conflicts()) {
    absl::StrAppend(&out, "conflict:     ", conflict, "\n");
  }
  if (!s.set_error().empty()) absl::StrAppend(&out, "set:          ", s.set_error(), "\n");
  for (const std::string& note : s.notes()) absl::StrAppend(&out, "note:         ", note, "\n");
  if (s.state() == v1::SET_BLOCKED && s.blocked_version() != 0) {
    absl::StrAppend(&out, "blocked:      breaking migration ", s.blocked_version(),
                    " waits for ", s.blocking_instances_size(), " live instance(s):\n");
    for (const v1::Instance& i : s.blocking_instances()) {
      absl::StrAppend(&out, "              ", i.app(), " ", i.app_version(), " (id ",
                      i.instance_id(), ", knows up to ", i.known_version(), ")\n");
    }
  }
  absl::StrAppend(&out, "apply mode:   ", s.apply_mode() == v1::MANUAL ? "manual" : "auto", "\n",
                  "coordinator:  ", s.coordinator_id(), "\n", "database:     ", s.database(),
                  " (schema ", s.schema(), ")\n", "refreshed:    ",
                  FormatTimestamp(s.refreshed_at()), "\n");
  return out;
}

std::string RenderMigrations(const v1::ListMigrationsResponse& response) {
  std::vector<std::vector<std::string>> rows = {
      {"VERSION", "NAME", "STATE", "APPLIED AT", "DURATION", "BY", "FLAGS"}};
  for (const v1::Migration& m : response.migrations()) {
    std::vector<std::string> flags;
    if (!m.transactional() && !m.checksum().empty()) flags.push_back("no-transaction");
    if (m.breaking()) flags.push_back("breaking");
    if (!m.has_down() && !m.checksum().empty()) flags.push_back("no-down");
    const bool applied = !m.applied_checksum().empty();
    const bool dirty = m.state() == v1::MIGRATION_DIRTY;
    // A dirty row has not finished: its progress, not a duration.
    std::string state = MigrationStateName(m.state());
    if (dirty) {
      absl::StrAppend(&state, " ", m.statements_done(), "/", m.statement_count(),
                      " statements done");
    }
    rows.push_back({absl::StrCat(m.version()), m.name(), state,
                    applied ? FormatTimestamp(m.applied_at()) : "-",
                    applied && !dirty ? FormatDuration(m.duration()) : "-",
                    m.applied_by().empty() ? "-" : m.applied_by(),
                    flags.empty() ? "-" : absl::StrJoin(flags, ",")});
  }
  return FormatTable(rows);
}

std::string RenderPlan(const v1::PlanResponse& plan) {
  std::string out;
  int n = 0;
  for (const v1::PlanStep& step : plan.steps()) {
    absl::StrAppend(&out, ++n, ". ",
                    step.repeatable().empty()
                        ? absl::StrCat(step.direction(), " ", step.version(), " ", step.name())
                        : absl::StrCat("repeatable ", step.repeatable(), " (", step.reason(), ")"),
                    "  [", step.transactional() ? "transaction" : "no-transaction",
                    step.breaking() ? ", breaking" : "", ", lock_timeout ",
                    FormatDuration(step.lock_timeout()), ", statement_timeout ",
                    step.statement_timeout().seconds() == 0 && step.statement_timeout().nanos() == 0
                        ? "none"
                        : FormatDuration(step.statement_timeout()),
                    "]\n");
    int i = 0;
    for (const std::string& sql : step.statements()) {
      absl::StrAppend(&out, "   -- statement ", ++i, "/", step.statements_size(), "\n   ",
                      absl::StrReplaceAll(sql, {{"\n", "\n   "}}), ";\n");
    }
    for (const std::string& finding : step.findings()) absl::StrAppend(&out, "   ! ", finding, "\n");
    if (step.held_back()) absl::StrAppend(&out, "   HELD BACK: ", step.held_back_reason(), "\n");
  }
  if (!plan.note().empty()) absl::StrAppend(&out, plan.note(), "\n");
  int runnable = 0;
  for (const v1::PlanStep& step : plan.steps()) runnable += step.held_back() ? 0 : 1;
  if (runnable > 0) {
    absl::StrAppend(&out, runnable, " step(s) would run; 'schemagatectl apply' applies them\n");
  }
  return out;
}

std::string RenderHistory(const v1::HistoryResponse& history) {
  std::vector<std::vector<std::string>> rows = {
      {"ID", "AT", "KIND", "VERSION", "RUN", "BY", "DURATION", "DETAIL"}};
  for (const v1::Event& e : history.events()) {
    std::string detail = e.message();
    if (!e.sqlstate().empty()) {
      detail = absl::StrCat("[SQLSTATE ", e.sqlstate(), "] ", e.message(),
                            e.statement_index() > 0
                                ? absl::StrCat(" (statement ", e.statement_index(), ", line ",
                                               e.line(), ")")
                                : "");
    }
    rows.push_back({absl::StrCat(e.id()), FormatTimestamp(e.at()), e.kind(),
                    e.version() != 0 ? absl::StrCat(e.version(), " ", e.name())
                    : e.name().empty() ? "-"
                                       : absl::StrCat("R ", e.name()),
                    e.run_id().empty() ? "-" : e.run_id(), e.actor(),
                    e.has_duration() ? FormatDuration(e.duration()) : "-",
                    detail.empty() ? "-" : detail});
  }
  return FormatTable(rows);
}

std::string RenderInstances(const v1::ListInstancesResponse& response) {
  std::vector<std::vector<std::string>> rows = {
      {"INSTANCE", "APP", "VERSION", "K", "R", "STATE", "COORDINATOR", "SINCE", "LAST SEEN"}};
  for (const v1::Instance& i : response.instances()) {
    rows.push_back({i.instance_id(), i.app().empty() ? "-" : i.app(),
                    i.app_version().empty() ? "-" : i.app_version(),
                    absl::StrCat(i.known_version()), absl::StrCat(i.required_version()),
                    v1::ReadinessState_Name(i.state()), i.coordinator_id(),
                    FormatTimestamp(i.first_seen()), FormatTimestamp(i.last_seen())});
  }
  std::string out = FormatTable(rows);
  absl::StrAppend(&out, "\n", response.instances_size(), " live instance(s)\n");
  std::vector<std::vector<std::string>> counts = {{"APP", "VERSION", "INSTANCES"}};
  for (const v1::VersionCount& c : response.counts()) {
    counts.push_back({c.app().empty() ? "-" : c.app(),
                      c.app_version().empty() ? "-" : c.app_version(),
                      absl::StrCat(c.instances())});
  }
  if (response.counts_size() > 0) absl::StrAppend(&out, "\n", FormatTable(counts));
  return out;
}

std::string RenderValidate(const v1::ValidateResponse& response) {
  std::string out;
  if (response.ok()) {
    out = "ok: the database matches the migration set";
    if (response.schema().checked()) {
      absl::StrAppend(&out, "; the live schema matches the one recorded after run ",
                      response.schema().recorded_run_id(), " (fingerprint ",
                      response.schema().live_fingerprint().substr(0, 16), ")");
    }
    absl::StrAppend(&out, "\n");
  } else {
    for (const std::string& problem : response.problems()) absl::StrAppend(&out, "- ", problem, "\n");
  }
  const v1::SchemaDriftCheck& schema = response.schema();
  if (schema.drifted()) {
    SchemaDiff diff;
    diff.removed.assign(schema.removed().begin(), schema.removed().end());
    diff.added.assign(schema.added().begin(), schema.added().end());
    absl::StrAppend(&out, "\n",
                    FormatSchemaDiff(diff,
                                     absl::StrCat("recorded after run ", schema.recorded_run_id(),
                                                  " at ", FormatTimestamp(schema.recorded_at())),
                                     "live schema"),
                    "\n");
  }
  const v1::DirtyMigrationChanges& dirty = schema.dirty_migration();
  if (dirty.removed_size() + dirty.added_size() > 0) {
    absl::StrAppend(&out, "\nnot drift: dirty migration ", dirty.version(), " (", dirty.name(),
                    ") made these changes before it was cut; finish it with 'schemagatectl "
                    "repair --resume ",
                    dirty.version(), "'\n");
    for (const std::string& line : dirty.removed()) absl::StrAppend(&out, "  -", line, "\n");
    for (const std::string& line : dirty.added()) absl::StrAppend(&out, "  +", line, "\n");
  }
  if (!schema.note().empty()) absl::StrAppend(&out, "note: ", schema.note(), "\n");
  if (!response.ok()) absl::StrAppend(&out, response.problems_size(), " problem(s)\n");
  return out;
}

std::string RenderEvent(const v1::Event& e) {
  std::string line = absl::StrCat(FormatTimestamp(e.at()), "  #", e.id(), "  ", e.kind());
  if (e.version() != 0) absl::StrAppend(&line, "  ", e.version(), "_", e.name());
  if (e.version() == 0 && !e.name().empty()) absl::StrAppend(&line, "  repeatable ", e.name());
  if (!e.run_id().empty()) absl::StrAppend(&line, "  ", e.run_id());
  absl::StrAppend(&line, "  by ", e.actor());
  if (e.has_duration()) absl::StrAppend(&line, "  ", FormatDuration(e.duration()));
  if (!e.sqlstate().empty()) absl::StrAppend(&line, "  [SQLSTATE ", e.sqlstate(), "]");
  if (!e.message().empty()) absl::StrAppend(&line, "  ", e.message());
  return line;
}

std::string RenderProgress(const v1::RunProgress& p) {
  // Version 0 with a name: a repeatable migration.
  const std::string label = p.version() == 0 && !p.name().empty()
                                ? absl::StrCat("repeatable ", p.name())
                                : absl::StrCat(p.version(), "_", p.name());
  switch (p.kind()) {
    case v1::LOCK_WAIT:
      return absl::StrCat("waiting for the run lock (", FormatDuration(p.elapsed()),
                          "): another run is under way");
    case v1::LOCK_ACQUIRED:
      if (!p.message().empty()) return p.message();
      return absl::StrCat("lock acquired (run ", p.run_id(), ")");
    case v1::MIGRATION_STARTED:
      if (!p.message().empty()) return absl::StrCat(p.message(), ": ", label);
      return absl::StrCat("applying ", label, " (", p.statement_count(), " statement",
                          p.statement_count() == 1 ? "" : "s", ")");
    case v1::STATEMENT_STARTED:
      return absl::StrCat("  ", label, ": statement ", p.statement_index(), "/",
                          p.statement_count(), " (", FormatDuration(p.elapsed()), ")");
    case v1::MIGRATION_FINISHED:
      if (!p.message().empty()) {
        return absl::StrCat(p.message(), ": ", label, " in ", FormatDuration(p.elapsed()));
      }
      return absl::StrCat("applied  ", label, " in ", FormatDuration(p.elapsed()));
    case v1::MIGRATION_FAILED:
      return absl::StrCat("FAILED   ", p.message());
    case v1::LOCK_TIMEOUT_RETRY:
      return absl::StrCat("retry    ", label, ": ", p.message());
    case v1::RUN_FINISHED:
      return absl::StrCat("done: ", p.message(), " (", FormatDuration(p.elapsed()), ")");
    default:
      return p.message();
  }
}

}  // namespace schemagate
