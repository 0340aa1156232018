// schemagatectl: the operator's command line (a gRPC client of schemagated,
// plus offline commands).
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "agent/channel.h"
#include "agent/exit_codes.h"
#include "agent/security_flags.h"
#include "coordinator/base/flags.h"
#include "coordinator/engine/lint_policy.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/base/conninfo.h"
#include "coordinator/postgres/catalog.h"
#include "ctl/adopt.h"
#include "ctl/import_alembic.h"
#include "ctl/new_migration.h"
#include "ctl/verify.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "ctl/render.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "schemagate/v1/schemagate.grpc.pb.h"

namespace schemagate {
namespace {

struct GlobalFlags {
  std::string coordinator = "127.0.0.1:50051";
  std::string output = "text";
  std::string timeout = "10s";
  ClientSecurityFlags security_flags;
  // Loaded from security_flags before any call.
  ClientSecurity security;
  bool json() const { return output == "json"; }
  // The first address of --coordinator.
  std::string address() const {
    std::vector<std::string> list = SplitCoordinators(coordinator);
    return list.empty() ? coordinator : list.front();
  }
};

// An UNAVAILABLE the coordinator sent itself because its database is down
// (pg_support's "database unavailable: ...", status's "cannot reach the
// database: ..."), not a coordinator that cannot be reached.
bool IsDatabaseUnavailable(const std::string& message) {
  return absl::StartsWith(message, "database unavailable: ") ||
         absl::StartsWith(message, "cannot reach the database: ");
}

// Maps a failed call to an exit code and prints why.
int Fail(const GlobalFlags& flags, const std::string& what, const grpc::Status& status) {
  // The gRPC code first (FAILED_PRECONDITION, UNAVAILABLE, ...): what scripts
  // and the docs' troubleshooting table key on.
  std::fprintf(stderr, "schemagatectl: %s: %s: %s\n", what.c_str(),
               absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())).c_str(),
               RedactSecrets(status.error_message()).c_str());
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      if (IsDatabaseUnavailable(status.error_message())) {
        // The coordinator answered: it is its database that does not.
        std::fprintf(stderr,
                     "schemagatectl: schemagated at %s is running but cannot reach its database; "
                     "it reconnects by itself (docs/troubleshooting.md, \"Health is "
                     "NOT_SERVING\")\n",
                     flags.coordinator.c_str());
        return kExitUnreachable;
      }
      std::fprintf(stderr, "schemagatectl: is schemagated running at %s? (--coordinator)%s\n",
                   flags.coordinator.c_str(),
                   !flags.security.tls ? " If it serves TLS, pass --tls-ca."
                   : flags.security.cert_chain_pem.empty()
                       ? " If it requires client certificates (mutual TLS), pass --tls-cert "
                         "and --tls-key."
                       : "");
      return kExitUnreachable;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return kExitTimedOut;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED: return kExitUnauthorised;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::UNIMPLEMENTED: return kExitUsage;
    case grpc::StatusCode::FAILED_PRECONDITION: return kExitFailed;
    default: return kExitNotDone;
  }
}

class Client {
 public:
  explicit Client(const GlobalFlags& flags)
      : flags_(flags),
        channel_(NewCoordinatorChannel(flags.address(), flags.security)),
        stub_(v1::OperatorService::NewStub(channel_)) {}

  absl::Duration timeout() const {
    absl::StatusOr<absl::Duration> d = ParseFlagDuration("--timeout", flags_.timeout);
    return d.ok() ? *d : absl::Seconds(10);
  }
  v1::OperatorService::Stub* stub() { return stub_.get(); }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  const GlobalFlags& flags_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::OperatorService::Stub> stub_;
};

void Print(const std::string& text) { std::fwrite(text.data(), 1, text.size(), stdout); }

int RunStatus(const GlobalFlags& flags) {
  Client client(flags);
  grpc::ClientContext context;
  SetDeadline(&context, client.timeout());
  v1::Status status;
  grpc::Status rpc = client.stub()->GetStatus(&context, v1::GetStatusRequest(), &status);
  if (!rpc.ok()) return Fail(flags, "status", rpc);
  Print(flags.json() ? ToJson(status, true) : RenderStatus(status));
  switch (status.state()) {
    case v1::CURRENT: return kExitReady;
    case v1::SET_FAILED:
    case v1::DIRTY:
    case v1::CONFLICT:
    case v1::SET_REFUSED: return kExitFailed;
    case v1::DATABASE_UNAVAILABLE: return kExitUnreachable;
    default: return kExitNotDone;
  }
}

int RunMigrations(const GlobalFlags& flags) {
  Client client(flags);
  grpc::ClientContext context;
  SetDeadline(&context, client.timeout());
  v1::ListMigrationsResponse response;
  grpc::Status rpc =
      client.stub()->ListMigrations(&context, v1::ListMigrationsRequest(), &response);
  if (!rpc.ok()) return Fail(flags, "migrations", rpc);
  Print(flags.json() ? ToJson(response, true) : RenderMigrations(response));
  return kExitReady;
}

int RunPlan(const GlobalFlags& flags, int64_t target) {
  Client client(flags);
  grpc::ClientContext context;
  SetDeadline(&context, client.timeout());
  v1::PlanRequest request;
  request.set_target_version(target);
  v1::PlanResponse response;
  grpc::Status rpc = client.stub()->Plan(&context, request, &response);
  if (!rpc.ok()) return Fail(flags, "plan", rpc);
  Print(flags.json() ? ToJson(response, true) : RenderPlan(response));
  return kExitReady;
}

using StartRun = std::function<std::unique_ptr<grpc::ClientReader<v1::RunProgress>>(
    v1::OperatorService::Stub* stub, grpc::ClientContext* context)>;

// Streams a run's progress (apply, rollback): redrawn on a terminal, plain
// lines otherwise, JSON lines with --output json.
int StreamRun(const GlobalFlags& flags, const std::string& what, const StartRun& start,
              const std::string& run_timeout) {
  Client client(flags);
  absl::StatusOr<absl::Duration> limit = ParseFlagDuration("--run-timeout", run_timeout);
  if (!limit.ok()) {
    std::fprintf(stderr, "schemagatectl: %s\n", std::string(limit.status().message()).c_str());
    return kExitUsage;
  }
  grpc::ClientContext context;
  SetDeadline(&context, *limit);
  std::unique_ptr<grpc::ClientReader<v1::RunProgress>> reader = start(client.stub(), &context);
  const bool tty = !flags.json() && isatty(STDOUT_FILENO);
  bool redraw_pending = false;
  v1::RunProgress progress;
  int applied = 0, held_back = 0;
  std::string held_back_why;
  while (reader->Read(&progress)) {
    applied = progress.applied();
    if (progress.held_back() > 0) {
      held_back = progress.held_back();
      held_back_why = progress.message();
    }
    if (flags.json()) {
      Print(ToJson(progress, false));
      std::fflush(stdout);
      continue;
    }
    const std::string line = RenderProgress(progress);
    const bool transient = progress.kind() == v1::STATEMENT_STARTED ||
                           progress.kind() == v1::LOCK_WAIT ||
                           progress.kind() == v1::MIGRATION_STARTED;
    if (tty) {
      // Transient lines are redrawn in place; the rest stay.
      Print(absl::StrCat("\r\033[K", line, transient ? "" : "\n"));
      redraw_pending = transient;
    } else {
      Print(line + "\n");
    }
    std::fflush(stdout);
  }
  if (redraw_pending) Print("\n");
  grpc::Status status = reader->Finish();
  if (!status.ok()) {
    if (status.error_code() == grpc::StatusCode::ABORTED) {
      std::fprintf(stderr, "schemagatectl: the run was cut off (lock or connection lost); run "
                           "'schemagatectl apply' again\n");
    }
    return Fail(flags, what, status);
  }
  if (!flags.json()) Print(absl::StrCat(what, " finished: ", applied, " migration(s)\n"));
  if (held_back > 0) {
    // Part of what was asked for did not run: not done (exit 1), never silently 0.
    // The text output has just printed why; JSON readers get it on stderr.
    if (flags.json()) {
      std::fprintf(stderr, "schemagatectl: %s: not everything was applied: %s\n", what.c_str(),
                   held_back_why.c_str());
    } else {
      std::fprintf(stderr, "schemagatectl: %s: not everything was applied: %d held back (why: above)\n",
                   what.c_str(), held_back);
    }
    return kExitNotDone;
  }
  return kExitReady;
}

int RunApply(const GlobalFlags& flags, const v1::ApplyRequest& request,
             const std::string& run_timeout) {
  return StreamRun(
      flags, "apply",
      [&](v1::OperatorService::Stub* stub, grpc::ClientContext* context) {
        return stub->Apply(context, request);
      },
      run_timeout);
}

int RunRollback(const GlobalFlags& flags, const v1::RollbackRequest& request,
                const std::string& run_timeout) {
  return StreamRun(
      flags, "rollback",
      [&](v1::OperatorService::Stub* stub, grpc::ClientContext* context) {
        return stub->Rollback(context, request);
      },
      run_timeout);
}

int RunValidate(const GlobalFlags& flags) {
  Client client(flags);
  grpc::ClientContext context;
  SetDeadline(&context, client.timeout());
  v1::ValidateResponse response;
  grpc::Status rpc = client.stub()->Validate(&context, v1::ValidateRequest(), &response);
  if (!rpc.ok()) return Fail(flags, "validate", rpc);
  if (flags.json()) {
    Print(ToJson(response, true));
  } else {
    Print(RenderValidate(response));
  }
  return response.ok() ? kExitReady : kExitFailed;
}

int RunRepair(const GlobalFlags& flags, const v1::RepairRequest& request) {
  Client client(flags);
  grpc::ClientContext context;
  SetDeadline(&context, std::max(client.timeout(), absl::Hours(1)));
  v1::RepairResponse response;
  grpc::Status rpc = client.stub()->Repair(&context, request, &response);
  if (!rpc.ok()) return Fail(flags, "repair", rpc);
  Print(flags.json() ? ToJson(response, true) : response.message() + "\n");
  return kExitReady;
}

int RunBaseline(const GlobalFlags& flags, const v1::BaselineRequest& request) {
  Client client(flags);
  grpc::ClientContext context;
  SetDeadline(&context, std::max(client.timeout(), absl::Minutes(5)));
  v1::BaselineResponse response;
  grpc::Status rpc = client.stub()->Baseline(&context, request, &response);
  if (!rpc.ok()) return Fail(flags, "baseline", rpc);
  Print(flags.json() ? ToJson(response, true) : response.message() + "\n");
  return kExitReady;
}

int RunHistory(const GlobalFlags& flags, int limit, int64_t version) {
  Client client(flags);
  grpc::ClientContext context;
  SetDeadline(&context, client.timeout());
  v1::HistoryRequest request;
  request.set_limit(limit);
  request.set_version(version);
  v1::HistoryResponse response;
  grpc::Status rpc = client.stub()->History(&context, request, &response);
  if (!rpc.ok()) return Fail(flags, "history", rpc);
  Print(flags.json() ? ToJson(response, true) : RenderHistory(response));
  return kExitReady;
}

int RunInstances(const GlobalFlags& flags) {
  Client client(flags);
  grpc::ClientContext context;
  SetDeadline(&context, client.timeout());
  v1::ListInstancesResponse response;
  grpc::Status rpc =
      client.stub()->ListInstances(&context, v1::ListInstancesRequest(), &response);
  if (!rpc.ok()) return Fail(flags, "instances", rpc);
  Print(flags.json() ? ToJson(response, true) : RenderInstances(response));
  return kExitReady;
}

// Follows the event feed, resuming after the last event seen when the
// stream breaks, until interrupted (or `for_duration` passes).
int RunWatch(const GlobalFlags& flags, int64_t after, const std::string& for_duration) {
  absl::Duration limit = absl::InfiniteDuration();
  if (!for_duration.empty()) {
    absl::StatusOr<absl::Duration> d = ParseFlagDuration("--for", for_duration);
    if (!d.ok()) {
      std::fprintf(stderr, "schemagatectl: %s\n", std::string(d.status().message()).c_str());
      return kExitUsage;
    }
    limit = *d;
  }
  const absl::Time until = absl::Now() + limit;
  Client client(flags);
  int64_t cursor = after;
  bool announced = false;
  while (absl::Now() < until) {
    grpc::ClientContext context;
    SetDeadline(&context, until - absl::Now());
    v1::WatchEventsRequest request;
    request.set_after_event_id(cursor);
    auto reader = client.stub()->WatchEvents(&context, request);
    if (!announced && !flags.json()) {
      std::fprintf(stderr, "watching events on %s (Ctrl-C to stop)\n", flags.coordinator.c_str());
      announced = true;
    }
    v1::Event event;
    while (reader->Read(&event)) {
      cursor = event.id();
      Print(flags.json() ? ToJson(event, false) : RenderEvent(event) + "\n");
      std::fflush(stdout);
    }
    grpc::Status status = reader->Finish();
    if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) break;
    if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
        status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
        status.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
      return Fail(flags, "watch", status);
    }
    std::fprintf(stderr, "schemagatectl: watch stream ended (%s); resuming after event %lld\n",
                 status.error_message().c_str(), static_cast<long long>(cursor));
    absl::SleepFor(absl::Seconds(1));
  }
  return kExitReady;
}

// The standard gRPC health check: SERVING while the coordinator's database answers.
int RunHealth(const GlobalFlags& flags, const std::string& service) {
  Client client(flags);
  auto stub = grpc::health::v1::Health::NewStub(client.channel());
  grpc::ClientContext context;
  SetDeadline(&context, client.timeout());
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status rpc = stub->Check(&context, request, &response);
  if (!rpc.ok()) return Fail(flags, "health", rpc);
  if (flags.json()) {
    Print(ToJson(response, true));
  } else {
    Print(absl::StrCat("coordinator ", flags.coordinator, ": ",
                       grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()),
                       "\n"));
  }
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? kExitReady
                                                                               : kExitNotDone;
}

// Offline: checks a migrations directory with the loader and the linter,
// under the policy schemagated applies at start (LoadLintedSet): exit 1 when
// schemagated would refuse the set.
int RunLint(const GlobalFlags& flags, const std::string& directory, SetFormat format,
            const std::string& lock_timeout, const std::string& lint_from) {
  absl::StatusOr<absl::Duration> timeout = ParseFlagDuration("--lock-timeout", lock_timeout);
  if (!timeout.ok()) {
    std::fprintf(stderr, "schemagatectl: %s\n", std::string(timeout.status().message()).c_str());
    return kExitUsage;
  }
  LintPolicy policy;
  policy.options.default_lock_timeout = *timeout;
  if (!lint_from.empty()) {
    absl::StatusOr<int64_t> version = ParseVersion(lint_from);
    if (!version.ok()) {
      std::fprintf(stderr, "schemagatectl: --lint-from: %s\n",
                   std::string(version.status().message()).c_str());
      return kExitUsage;
    }
    policy.lint_from = *version;
  }
  std::vector<std::string> warnings;
  std::vector<LintFinding> findings;
  absl::StatusOr<MigrationSet> set = LoadLintedSet(directory, format, policy, &warnings, &findings);
  // Findings are the report itself (stdout); the other warnings (ignored
  // files, stale lint-ignore rules, --lint-from above head) go to stderr.
  std::set<std::string> formatted;
  for (const LintFinding& f : findings) formatted.insert(FormatFinding(f));
  for (const std::string& w : warnings) {
    if (formatted.count(w) == 0) std::fprintf(stderr, "warning: %s\n", w.c_str());
  }
  if (!set.ok() && findings.empty()) {
    // The loader's problems are lint errors too (unparsable SQL, CONCURRENTLY
    // in a transaction, duplicates, misspelt directives...), already with
    // file:line.
    std::fprintf(stdout, "%s\n", std::string(set.status().message()).c_str());
    return kExitNotDone;
  }
  int errors = 0, waived = 0;
  for (const LintFinding& f : findings) {
    errors += Refuses(f, policy);
    waived += !f.waived.empty();
  }
  const int warning_count = static_cast<int>(findings.size()) - errors - waived;
  if (flags.json()) {
    std::string out = "{\"findings\": [";
    for (size_t i = 0; i < findings.size(); ++i) {
      const LintFinding& f = findings[i];
      auto quote = [](const std::string& text) {
        google::protobuf::Value v;
        v.set_string_value(text);
        std::string json;
        (void)google::protobuf::util::MessageToJsonString(v, &json);
        return json;
      };
      absl::StrAppend(&out, i == 0 ? "\n" : ",\n", "  {\"path\": ", quote(f.path),
                      ", \"line\": ", f.line, ", \"severity\": \"",
                      LintSeverityName(f.severity), "\", \"rule\": ", quote(f.rule),
                      ", \"message\": ", quote(f.message), ", \"fix\": ", quote(f.fix),
                      ", \"waived\": ", quote(f.waived), "}");
    }
    absl::StrAppend(&out, "\n], \"errors\": ", errors, ", \"warnings\": ", warning_count,
                    ", \"waived\": ", waived, "}\n");
    Print(out);
  } else {
    for (const LintFinding& f : findings) Print(FormatFinding(f) + "\n");
    const size_t checked = set.ok() ? set->migrations().size() : 0;
    Print(absl::StrCat(set.ok() ? absl::StrCat(checked, " migration(s) checked: ")
                                : "schemagated would refuse to start with this set: ",
                       errors, " error(s), ", warning_count, " warning(s)",
                       waived > 0 ? absl::StrCat(", ", waived, " waived") : "", "\n"));
  }
  return errors > 0 ? kExitNotDone : kExitReady;
}

// Offline: proves every down undoes its up on a scratch database.
int RunVerify(const GlobalFlags& flags, const std::string& directory, SetFormat format,
              const std::string& url, bool allow_non_empty) {
  if (url.empty()) {
    std::fprintf(stderr, "schemagatectl verify: --database-url SCRATCH is required (a throwaway "
                         "database: every migration is applied, undone and applied again)\n");
    return kExitUsage;
  }
  std::vector<std::string> warnings;
  absl::StatusOr<MigrationSet> set = MigrationSet::LoadDirectory(directory, &warnings, format);
  if (!set.ok()) {
    std::fprintf(stderr, "%s\n", std::string(set.status().message()).c_str());
    return kExitUsage;
  }
  VerifyOptions options;
  options.allow_non_empty = allow_non_empty;
  const bool tty = !flags.json() && isatty(STDERR_FILENO);
  absl::StatusOr<VerifyReport> report =
      VerifyMigrations(*set, url, options, [&](const std::string& line) {
        if (flags.json()) return;
        std::fprintf(stderr, tty ? "\r\033[K%s" : "%s\n", line.c_str());
      });
  if (tty) std::fprintf(stderr, "\r\033[K");
  if (!report.ok()) {
    std::fprintf(stderr, "schemagatectl verify: %s\n",
                 RedactSecrets(report.status().message()).c_str());
    return absl::IsUnavailable(report.status()) ? kExitUnreachable : kExitUsage;
  }
  Print(FormatVerifyReport(*report));
  return report->ok() ? kExitReady : kExitNotDone;
}

// Offline: writes the readable schema description (what validate and verify
// compare) to a file, for review or to diff between environments.
int RunSnapshot(const std::string& url, const std::string& schema, const std::string& out_path) {
  if (url.empty()) {
    std::fprintf(stderr, "schemagatectl snapshot: --database-url is required\n");
    return kExitUsage;
  }
  absl::StatusOr<SchemaDescription> description = DescribeSchema(url, schema);
  if (!description.ok()) {
    std::fprintf(stderr, "schemagatectl snapshot: %s\n",
                 RedactSecrets(description.status().message()).c_str());
    return kExitUnreachable;
  }
  if (out_path.empty() || out_path == "-") {
    Print(description->text);
  } else {
    FILE* f = std::fopen(out_path.c_str(), "w");
    if (f == nullptr || std::fwrite(description->text.data(), 1, description->text.size(), f) !=
                            description->text.size()) {
      std::fprintf(stderr, "schemagatectl snapshot: cannot write %s\n", out_path.c_str());
      if (f != nullptr) std::fclose(f);
      return kExitUsage;
    }
    std::fclose(f);
    std::fprintf(stderr, "wrote %s (%zu objects, fingerprint %s)\n", out_path.c_str(),
                 description->lines.size(), description->fingerprint.substr(0, 16).c_str());
  }
  return kExitReady;
}

int RunNew(const GlobalFlags& flags, const NewMigrationOptions& options) {
  absl::StatusOr<NewMigrationFiles> files = CreateMigrationFiles(options);
  if (!files.ok()) {
    std::fprintf(stderr, "schemagatectl new: %s\n", std::string(files.status().message()).c_str());
    return kExitUsage;
  }
  if (!files->warning.empty()) {
    std::fprintf(stderr, "schemagatectl new: warning: %s\n", files->warning.c_str());
  }
  if (flags.json()) {
    Print(absl::StrCat("{\"version\": \"", files->version, "\", \"up\": \"", files->up_path,
                       "\", \"down\": \"", files->down_path, "\", \"created_directory\": ",
                       files->created_directory ? "true" : "false", "}\n"));
  } else {
    Print(absl::StrCat(
        files->created_directory ? absl::StrCat("created directory ", options.directory, "\n")
                                 : "",
        "created ", files->up_path, "\ncreated ", files->down_path, "\n"));
  }
  return kExitReady;
}

int Main(int argc, char** argv) {
  CLI::App app{
      "schemagatectl: see and steer schema rollouts run by schemagated.\n\n"
      "Examples:\n"
      "  schemagatectl status --coordinator sg:50051\n"
      "  schemagatectl plan\n"
      "  schemagatectl apply --target 20260101120000\n"
      "  schemagatectl history --limit 20 --output json\n"
      "  schemagatectl instances\n"
      "  schemagatectl watch\n"
      "  schemagatectl apply --rehearse        # try pending migrations, roll back\n"
      "  schemagatectl rollback --target 3\n"
      "  schemagatectl repair --resume 4\n"
      "  schemagatectl new add_documents_language\n\n"
      "Exit codes: 0 ok (status: every migration applied), 1 not done / not current,\n"
      "2 usage or request rejected, 3 timed out, 5 a migration failed, or the set is\n"
      "failed/dirty/in conflict/refused (out of order, unadopted schema), or a rollback\n"
      "would strand live instances (an operator must act), 6 not authorised,\n"
      "7 coordinator (or, for status, its database) unreachable.",
      "schemagatectl"};
  app.require_subcommand(1);
  app.fallthrough();
  GlobalFlags flags;
  app.add_option("--coordinator", flags.coordinator, "Coordinator address host:port")
      ->envname("SCHEMAGATE_COORDINATOR")
      ->capture_default_str();
  app.add_option("--output,-o", flags.output, "text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--timeout", flags.timeout, "Deadline of each call")->capture_default_str();
  AddClientSecurityFlags(&app, &flags.security_flags);

  CLI::App* status = app.add_subcommand(
      "status", "Show the rollout state; exit 0 only if every migration is applied\n"
                "  e.g. schemagatectl status --coordinator 127.0.0.1:50051");
  CLI::App* migrations = app.add_subcommand(
      "migrations", "List every migration of the set and the database with its state\n"
                    "  e.g. schemagatectl migrations --output json");
  int64_t plan_target = 0;
  CLI::App* plan = app.add_subcommand(
      "plan", "Show what 'apply' would run, step by step, with its SQL\n"
              "  e.g. schemagatectl plan --target 3");
  plan->add_option("--target", plan_target, "Plan up to this version (default: the head)");

  v1::ApplyRequest apply_request;
  int64_t apply_target = 0;
  bool allow_breaking = false;
  std::string actor, run_timeout = "1h";
  CLI::App* apply = app.add_subcommand(
      "apply", "Apply pending migrations now, with progress (retries a failed one).\n"
               "Refused (exit 5) for a pending version below the applied head unless\n"
               "schemagated runs with --allow-out-of-order, and on a database with tables\n"
               "but no recorded migration until 'baseline' adopts it\n"
               "  e.g. schemagatectl apply --target 20260101120000");
  apply->add_option("--target", apply_target, "Apply up to this version (default: the head)");
  apply->add_flag("--allow-breaking", allow_breaking,
                  "Also apply breaking migrations although old instances may still need the "
                  "old schema (recorded in history)");
  apply->add_option("--actor", actor, "Who asks, recorded in history (default: $USER@host)");
  apply->add_option("--run-timeout", run_timeout, "Give up waiting for the run after this long")
      ->capture_default_str();

  bool apply_dry_run = false, apply_rehearse = false;
  apply->add_flag("--dry-run", apply_dry_run, "Show what would run; execute nothing");
  apply->add_flag("--rehearse", apply_rehearse,
                  "Run the pending migrations in one transaction and roll it back: does each "
                  "one work, and how long does it take? (no-transaction ones are skipped)");

  v1::RollbackRequest rollback_request;
  int64_t rollback_target = -1;
  bool rollback_dry_run = false, rollback_force = false;
  CLI::App* rollback = app.add_subcommand(
      "rollback", "Run the downs of every version above --target, newest first, under the lock.\n"
                  "Refused (exit 5), naming them, while live instances need a version above\n"
                  "--target, unless --force\n"
                  "  e.g. schemagatectl rollback --target 3   (automatic runs then hold at 3)");
  rollback->add_option("--target", rollback_target, "Keep this version and everything below")
      ->required();
  rollback->add_flag("--dry-run", rollback_dry_run, "Show what would be rolled back");
  rollback->add_flag("--force", rollback_force,
                     "Roll back although live instances need a version above --target "
                     "(they are named in history)");
  rollback->add_option("--actor", actor, "Who asks, recorded in history");
  rollback->add_option("--run-timeout", run_timeout, "Give up waiting after this long")
      ->capture_default_str();

  CLI::App* validate = app.add_subcommand(
      "validate", "Compare the set with the database: edited or missing files, older files\n"
                  "of applied versions, dirty rows, failures, out-of-order versions (unless\n"
                  "--allow-out-of-order), tables no migration recorded (baseline), and the\n"
                  "live schema against the one recorded after the last run (changes made\n"
                  "outside schemagate, as a diff); exit 5 on any problem\n"
                  "  e.g. schemagatectl validate");

  v1::RepairRequest repair_request;
  int64_t repair_clear_dirty = 0, repair_mark_applied = 0, repair_mark_not_applied = 0,
          repair_resume = 0;
  bool repair_clear_failure = false;
  CLI::App* repair = app.add_subcommand(
      "repair", "Fix the bookkeeping after a cut or failed run (audited in history)\n"
                "  e.g. schemagatectl repair --resume 20260101120000");
  auto* repair_group = repair->add_option_group("action", "exactly one of");
  repair_group->add_option("--resume", repair_resume,
                           "Continue a cut no-transaction migration at its first unfinished "
                           "statement (drops an invalid index a cut CONCURRENTLY left)");
  repair_group->add_option("--clear-dirty", repair_clear_dirty,
                           "The dirty migration was finished by hand: mark it applied");
  repair_group->add_option("--mark-applied", repair_mark_applied,
                           "Record a version applied without running it (also realigns an "
                           "edited file's checksum)");
  repair_group->add_option("--mark-not-applied", repair_mark_not_applied,
                           "Forget a version (undone by hand)");
  repair_group->add_flag("--clear-failure", repair_clear_failure,
                         "Forget the last run's failure so automatic runs try again");
  repair_group->require_option(1);
  repair->add_option("--actor", actor, "Who asks, recorded in history");

  int64_t baseline_version = 0;
  CLI::App* baseline = app.add_subcommand(
      "baseline", "Adopt an existing database (tables but no recorded migration, which\n"
                  "runs refuse): mark every version up to V applied without running them\n"
                  "  e.g. schemagatectl baseline --version 5   (says so if it finds alembic_version)");
  baseline->add_option("--version", baseline_version, "The version the database already has")
      ->required();
  baseline->add_option("--actor", actor, "Who asks, recorded in history");

  int history_limit = 50;
  int64_t history_version = 0;
  CLI::App* history = app.add_subcommand(
      "history", "Show the event history (runs, applies, failures), newest first\n"
                 "  e.g. schemagatectl history --version 3");
  history->add_option("--limit", history_limit, "At most this many events")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  history->add_option("--version", history_version, "Only events of this version");

  CLI::App* instances = app.add_subcommand(
      "instances", "List the live instances of the fleet and counts per app version\n"
                   "  e.g. schemagatectl instances --coordinator sg-1:50051");
  int64_t watch_after = 0;
  std::string watch_for;
  CLI::App* watch = app.add_subcommand(
      "watch", "Follow runs, failures and instances joining and leaving, live\n"
               "  e.g. schemagatectl watch --after 120");
  watch->add_option("--after", watch_after,
                    "Start after this event id (default: only new events)");
  watch->add_option("--for", watch_for, "Stop after this long (e.g. 30s)");

  std::string health_service;
  CLI::App* health = app.add_subcommand(
      "health", "gRPC health of the coordinator: SERVING while its database answers\n"
                "  e.g. schemagatectl health --coordinator sg-0:50051");
  health->add_option("--service", health_service,
                     "Service name (default: the whole server), e.g. schemagate.v1.AgentService");

  std::string lint_dir = "migrations", lint_lock_timeout = "5s", lint_from, set_format = "auto";
  // --format of the commands that read a set offline.
  auto add_format = [&set_format](CLI::App* command) {
    command
        ->add_option("--format", set_format,
                     "The set's file format (docs/formats.md); auto: told from the files, a "
                     "directory mixing formats is refused")
        ->envname("SCHEMAGATE_FORMAT")
        ->check(CLI::IsMember(SetFormatNames()))
        ->capture_default_str();
  };
  CLI::App* lint = app.add_subcommand(
      "lint", "Check migrations offline: unsafe locks, unmarked drops/renames, SQL errors;\n"
              "exit 1 when schemagated would refuse to start with the set\n"
              "  e.g. schemagatectl lint --migrations-dir ./migrations\n"
              "       schemagatectl lint --lint-from 0042   (adopting a set: 1..42 predate "
              "schemagate)");
  lint->add_option("--migrations-dir", lint_dir, "The migrations to check")
      ->envname("SCHEMAGATE_MIGRATIONS_DIR")
      ->capture_default_str();
  add_format(lint);
  lint->add_option("--lock-timeout", lint_lock_timeout,
                   "schemagated's --lock-timeout (0: none), for the lock-timeout rule")
      ->capture_default_str();
  lint->add_option("--lint-from", lint_from,
                   "As schemagated's --lint-from: findings of migrations at or below VERSION "
                   "are reported as waived, never errors. One file instead: "
                   "'-- schemagate:lint-ignore=RULE reason: WHY'")
      ->envname("SCHEMAGATE_LINT_FROM");

  std::string verify_dir = "migrations", verify_url;
  bool verify_allow_non_empty = false;
  CLI::App* verify = app.add_subcommand(
      "verify", "Prove on a SCRATCH database that every down undoes its up (for your CI)\n"
                "  e.g. schemagatectl verify --database-url postgres://ci@localhost/scratch");
  verify->add_option("--migrations-dir", verify_dir, "The migrations to verify")
      ->envname("SCHEMAGATE_MIGRATIONS_DIR")
      ->capture_default_str();
  add_format(verify);
  verify->add_option("--database-url", verify_url,
                     "A throwaway database: migrations are applied, undone and applied again");
  verify->add_flag("--allow-non-empty", verify_allow_non_empty,
                   "Run on a database that already has tables (e.g. a restored copy)");

  std::string snapshot_url, snapshot_schema = "schemagate", snapshot_out;
  AdoptCommand adopt_command;
  CLI::App* adopt = app.add_subcommand(
      "adopt", "Adopt a database goose, dbmate, golang-migrate, Flyway or Alembic migrated\n"
               "(offline, under the run lock): its applied versions are recorded with the\n"
               "checksums of your files, dirty/failed ones as dirty; nothing runs. Refused\n"
               "(exit 5) once schemagate records a migration, or when the database records\n"
               "versions the directory has no file for (named; --skip-missing)\n"
               "  e.g. schemagatectl adopt --database-url postgres://app@db/app "
               "--migrations-dir db/migrations --dry-run");
  adopt->add_option("--database-url", adopt_command.database_url, "The database to adopt")
      ->envname("SCHEMAGATE_DATABASE_URL");
  adopt->add_option("--migrations-dir", adopt_command.migrations_dir, "The set, unchanged")
      ->capture_default_str();
  adopt->add_option("--format", adopt_command.format, kSetFormatChoices)
      ->check(CLI::IsMember(SetFormatNames()))
      ->capture_default_str();
  adopt->add_option("--from", adopt_command.from,
                    "Whose bookkeeping to adopt (needed when several are found)")
      ->check(CLI::IsMember({"goose", "dbmate", "golang-migrate", "flyway", "alembic"}));
  adopt->add_option("--schema", adopt_command.schema, "schemagate's bookkeeping schema")
      ->capture_default_str();
  adopt->add_option("--actor", adopt_command.actor, "Who asks, recorded in history");
  adopt->add_flag("--skip-missing", adopt_command.skip_missing,
                  "Adopt although the database records versions without a file (left out, "
                  "named in history)");
  adopt->add_flag("--dry-run", adopt_command.dry_run, "Show what would be adopted; write nothing");

  ImportAlembicCommand import_command;
  CLI::App* import_alembic = app.add_subcommand(
      "import-alembic",
      "Write one SQL migration pair per revision of an Alembic project (offline, through\n"
      "Alembic's own offline mode: alembic upgrade A:B --sql), in revision order, each\n"
      "naming its revision, for 'adopt --from alembic'. Needs a Python that imports\n"
      "alembic and the project's env.py; refused (exit 2) for a branched history\n"
      "  e.g. schemagatectl import-alembic --config alembic.ini --out db/migrations");
  import_alembic->add_option("--config", import_command.config, "The project's alembic.ini")
      ->capture_default_str();
  import_alembic->add_option("--out", import_command.out,
                             "Directory to write (created; empty, or earlier imports only)")
      ->required();
  import_alembic->add_option("--python", import_command.python,
                             "Interpreter that imports alembic (default: $SCHEMAGATE_PYTHON, "
                             "python3, /usr/bin/python3)");
  import_alembic->add_option("--version-table", import_command.version_table,
                             "Alembic's version table, left out of the files")
      ->capture_default_str();
  import_alembic->add_flag("--dry-run", import_command.dry_run,
                           "Show which files would be written; write nothing");

  CLI::App* snapshot = app.add_subcommand(
      "snapshot", "Write the database's schema, readable and sorted, to a file\n"
                  "  e.g. schemagatectl snapshot --database-url $URL --out schema.txt");
  snapshot->add_option("--database-url", snapshot_url, "The database to describe")
      ->envname("SCHEMAGATE_DATABASE_URL");
  snapshot->add_option("--schema", snapshot_schema, "schemagate's bookkeeping schema (left out)")
      ->capture_default_str();
  snapshot->add_option("--out", snapshot_out, "File to write (default: standard output)");

  NewMigrationOptions new_options;
  CLI::App* create = app.add_subcommand(
      "new", "Create an empty VERSION_name.up.sql/.down.sql pair (offline); VERSION is the\n"
             "UTC time YYYYMMDDHHMMSS, or the next free second if that one is taken\n"
             "  e.g. schemagatectl new add_users_email_index --no-transaction");
  create->add_option("name", new_options.name, "What the migration does")->required();
  create->add_option("--migrations-dir", new_options.directory, "Where to write the files (created if missing)")
      ->envname("SCHEMAGATE_MIGRATIONS_DIR")
      ->capture_default_str();
  create->add_flag("--no-transaction", new_options.no_transaction,
                   "For CREATE INDEX CONCURRENTLY and friends");
  create->add_flag("--breaking", new_options.breaking,
                   "The contract step of an expand/contract change (the final drop); a rename\n"
                   "is add, backfill, switch, then drop (docs/safe-migrations.md)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitReady : kExitUsage;
  }
  // SCHEMAGATE_PARSE_ONLY=1: check the command line and stop (used by the
  // test that every command line under deploy/ is accepted).
  if (EnvOr("SCHEMAGATE_PARSE_ONLY") == "1") return kExitReady;
  if (absl::StatusOr<absl::Duration> d = ParseFlagDuration("--timeout", flags.timeout); !d.ok()) {
    std::fprintf(stderr, "schemagatectl: %s\n", std::string(d.status().message()).c_str());
    return kExitUsage;
  }
  if (absl::StatusOr<ClientSecurity> security = LoadClientSecurity(flags.security_flags);
      security.ok()) {
    flags.security = *std::move(security);
  } else {
    std::fprintf(stderr, "schemagatectl: %s\n", std::string(security.status().message()).c_str());
    return kExitUsage;
  }
  if (std::string warning =
          CleartextTokenWarning(flags.security, SplitCoordinators(flags.coordinator));
      !warning.empty()) {
    std::fprintf(stderr, "schemagatectl: warning: %s\n", warning.c_str());
  }
  if (status->parsed()) return RunStatus(flags);
  if (migrations->parsed()) return RunMigrations(flags);
  if (plan->parsed()) return RunPlan(flags, plan_target);
  if (history->parsed()) return RunHistory(flags, history_limit, history_version);
  if (create->parsed()) return RunNew(flags, new_options);
  if (instances->parsed()) return RunInstances(flags);
  if (watch->parsed()) return RunWatch(flags, watch_after, watch_for);
  if (health->parsed()) return RunHealth(flags, health_service);
  // --format was checked against SetFormatNames() when parsed.
  const SetFormat format = ParseSetFormat(set_format).value_or(SetFormat::kAuto);
  if (lint->parsed()) return RunLint(flags, lint_dir, format, lint_lock_timeout, lint_from);
  if (adopt->parsed()) {
    adopt_command.json = flags.json();
    return RunAdopt(adopt_command);
  }
  if (import_alembic->parsed()) return RunImportAlembic(import_command);
  if (verify->parsed()) {
    return RunVerify(flags, verify_dir, format, verify_url, verify_allow_non_empty);
  }
  if (snapshot->parsed()) return RunSnapshot(snapshot_url, snapshot_schema, snapshot_out);
  if (validate->parsed()) return RunValidate(flags);
  if (actor.empty()) {
    char host[256] = {0};
    gethostname(host, sizeof(host) - 1);
    actor = absl::StrCat(EnvOr("USER", "operator"), "@", host);
  }
  if (rollback->parsed()) {
    rollback_request.set_target_version(rollback_target);
    rollback_request.set_dry_run(rollback_dry_run);
    rollback_request.set_force(rollback_force);
    rollback_request.set_actor(actor);
    return RunRollback(flags, rollback_request, run_timeout);
  }
  if (repair->parsed()) {
    repair_request.set_actor(actor);
    if (repair_resume != 0) {
      repair_request.set_action(v1::RepairRequest::RESUME);
      repair_request.set_version(repair_resume);
    } else if (repair_clear_dirty != 0) {
      repair_request.set_action(v1::RepairRequest::CLEAR_DIRTY);
      repair_request.set_version(repair_clear_dirty);
    } else if (repair_mark_applied != 0) {
      repair_request.set_action(v1::RepairRequest::MARK_APPLIED);
      repair_request.set_version(repair_mark_applied);
    } else if (repair_mark_not_applied != 0) {
      repair_request.set_action(v1::RepairRequest::MARK_NOT_APPLIED);
      repair_request.set_version(repair_mark_not_applied);
    } else if (repair_clear_failure) {
      repair_request.set_action(v1::RepairRequest::CLEAR_FAILURE);
    }
    return RunRepair(flags, repair_request);
  }
  if (baseline->parsed()) {
    v1::BaselineRequest request;
    request.set_version(baseline_version);
    request.set_actor(actor);
    return RunBaseline(flags, request);
  }
  if (apply->parsed()) {
    apply_request.set_dry_run(apply_dry_run);
    apply_request.set_rehearse(apply_rehearse);
    apply_request.set_target_version(apply_target);
    apply_request.set_allow_breaking(allow_breaking);
    apply_request.set_actor(actor);
    return RunApply(flags, apply_request, run_timeout);
  }
  return kExitUsage;
}

}  // namespace
}  // namespace schemagate

int main(int argc, char** argv) { return schemagate::Main(argc, argv); }
