// schemagatectl adopt (adopt.h).
#include "ctl/adopt.h"

#include <cstdio>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/exit_codes.h"
#include "coordinator/base/conninfo.h"
#include "coordinator/engine/runner.h"
#include "coordinator/postgres/pg_store.h"

namespace schemagate {
namespace {

int Refused(const absl::Status& status) {
  std::fprintf(stderr, "schemagatectl adopt: %s\n", RedactSecrets(status.message()).c_str());
  switch (status.code()) {
    case absl::StatusCode::kUnavailable: return kExitUnreachable;
    case absl::StatusCode::kFailedPrecondition: return kExitFailed;
    default: return kExitUsage;
  }
}

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

int RunAdopt(const AdoptCommand& command) {
  if (command.database_url.empty()) {
    std::fprintf(stderr, "schemagatectl adopt: --database-url is required\n");
    return kExitUsage;
  }
  absl::StatusOr<SetFormat> format = ParseSetFormat(command.format);
  if (!format.ok()) return Refused(format.status());
  AdoptRequest request;
  if (!command.from.empty()) {
    absl::StatusOr<ForeignTool> from = ParseForeignTool(command.from);
    if (!from.ok()) return Refused(from.status());
    request.from = *from;
  }
  request.skip_missing = command.skip_missing;
  request.dry_run = command.dry_run;
  request.actor = command.actor.empty() ? "schemagatectl adopt" : command.actor;
  std::vector<std::string> warnings;
  absl::StatusOr<MigrationSet> set =
      MigrationSet::LoadDirectory(command.migrations_dir, &warnings, *format);
  for (const std::string& w : warnings) std::fprintf(stderr, "%s\n", w.c_str());
  if (!set.ok()) {
    std::fprintf(stderr, "%s\n", std::string(set.status().message()).c_str());
    return kExitUsage;
  }
  if (absl::Status direct = CheckDirectSession(command.database_url); !direct.ok()) {
    return Refused(direct);
  }
  PgStoreOptions options;
  options.conninfo = command.database_url;
  options.schema = command.schema;
  options.coordinator_id = request.actor;
  PgStore store(options);
  RunnerOptions runner_options;
  runner_options.coordinator_id = request.actor;
  Runner runner(&store, &*set, runner_options);
  absl::StatusOr<AdoptReport> report = runner.Adopt(request);
  if (!report.ok()) return Refused(report.status());
  const AdoptPlan& plan = report->plan;
  if (command.json) {
    std::string out = absl::StrCat("{\"dry_run\": ", command.dry_run ? "true" : "false",
                                   ", \"table\": ", Quote(plan.source.table), ", \"tool\": ",
                                   Quote(ForeignToolName(plan.source.tool)), ", \"adopted\": [");
    for (size_t i = 0; i < plan.steps.size(); ++i) {
      absl::StrAppend(&out, i ? ", " : "", "{\"version\": ", plan.steps[i].migration->version,
                      ", \"name\": ", Quote(plan.steps[i].migration->name),
                      ", \"dirty\": ", plan.steps[i].dirty ? "true" : "false", "}");
    }
    absl::StrAppend(&out, "], \"missing\": [");
    for (size_t i = 0; i < plan.missing.size(); ++i) {
      absl::StrAppend(&out, i ? ", " : "", Quote(plan.missing[i]));
    }
    absl::StrAppend(&out, "], \"pending\": ", plan.pending.size(),
                    ", \"message\": ", Quote(report->message), "}\n");
    std::fputs(out.c_str(), stdout);
  } else {
    for (const std::string& line : plan.Lines()) std::printf("%s\n", line.c_str());
    std::printf("%s\n", report->message.c_str());
  }
  return 0;
}

}  // namespace schemagate
