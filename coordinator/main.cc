// schemagated: the migration coordinator daemon. Wiring only; the engine
// lives in the schemagate_engine library.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/backup.h"
#include "coordinator/conninfo.h"
#include "coordinator/coordinator.h"
#include "coordinator/flags.h"
#include "coordinator/lint.h"
#include "coordinator/log.h"
#include "coordinator/metrics.h"
#include "coordinator/migration_set.h"
#include "coordinator/pg_store.h"
#include "coordinator/server.h"

namespace schemagate {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

std::string DefaultCoordinatorId() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return absl::StrCat(host, "-", getpid());
}

int Main(int argc, char** argv) {
  // Debian builds abseil without NDEBUG, so every absl::Mutex (gRPC's own
  // locks included) would feed the deadlock-detection graph under a global
  // lock (GraphCycles::GetId was the coordinator's largest named symbol in
  // a perf profile of fan-out to 10,000 Wait streams; docs/benchmarks.md).
  // The thread-safety annotations and the tests cover lock order instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  CLI::App app{
      "schemagated: serialises schema migrations for a fleet of application instances.\n"
      "Holds a PostgreSQL advisory lock for every run, applies pending migrations\n"
      "(--apply=auto) and tells each app's schemagate-agent when the schema fits.\n\n"
      "Example:\n"
      "  schemagated --database-url postgres://app@db:5432/app \\\n"
      "              --migrations-dir ./migrations --listen 0.0.0.0:50051\n\n"
      "Every flag can also be set as SCHEMAGATE_<FLAG> (e.g. SCHEMAGATE_DATABASE_URL);\n"
      "DATABASE_URL is accepted too.",
      "schemagated"};
  std::string database_url, migrations_dir = "./migrations", listen = "127.0.0.1:50051";
  std::string apply_mode = "auto", schema = "schemagate", lock_key, id, log_format = "text";
  std::string metrics_listen, lint_mode = "error", backup_dir, backup_command;
  std::string lock_timeout = "5s", statement_timeout = "0", resync = "10s", grace, lease = "30s";
  int lock_retries = 5;
  bool reflection = false, verbose = false;
  app.add_option("--database-url", database_url,
                 "PostgreSQL URL or key=value conninfo (direct connection, not a transaction "
                 "pooler)")
      ->envname("SCHEMAGATE_DATABASE_URL");
  app.add_option("--migrations-dir", migrations_dir, "Directory of VERSION_name.up.sql files")
      ->envname("SCHEMAGATE_MIGRATIONS_DIR")
      ->capture_default_str();
  app.add_option("--listen", listen, "gRPC address host:port (port 0: any free port)")
      ->envname("SCHEMAGATE_LISTEN")
      ->capture_default_str();
  app.add_option("--apply", apply_mode,
                 "auto: apply pending migrations as soon as possible; manual: wait for "
                 "'schemagatectl apply'")
      ->envname("SCHEMAGATE_APPLY")
      ->check(CLI::IsMember({"auto", "manual"}))
      ->capture_default_str();
  app.add_option("--schema", schema, "Schema holding schemagate's bookkeeping tables")
      ->envname("SCHEMAGATE_SCHEMA")
      ->capture_default_str();
  app.add_option("--lock-key", lock_key,
                 "Advisory lock key (number or text); default derived from database and schema")
      ->envname("SCHEMAGATE_LOCK_KEY");
  app.add_option("--id", id, "Coordinator id recorded in history (default host-pid)")
      ->envname("SCHEMAGATE_ID");
  app.add_option("--lock-timeout", lock_timeout,
                 "Default lock_timeout for each migration (directive overrides)")
      ->envname("SCHEMAGATE_LOCK_TIMEOUT")
      ->capture_default_str();
  app.add_option("--statement-timeout", statement_timeout,
                 "Default statement_timeout for each migration; 0 = none")
      ->envname("SCHEMAGATE_STATEMENT_TIMEOUT")
      ->capture_default_str();
  app.add_option("--lock-retries", lock_retries,
                 "Retries of a migration whose lock_timeout tripped (with backoff)")
      ->envname("SCHEMAGATE_LOCK_RETRIES")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  app.add_option("--resync-interval", resync, "Full state re-read besides LISTEN/NOTIFY")
      ->envname("SCHEMAGATE_RESYNC_INTERVAL")
      ->capture_default_str();
  app.add_option("--lease-ttl", lease,
                 "An attached instance counts as live this long after its last heartbeat")
      ->envname("SCHEMAGATE_LEASE_TTL")
      ->capture_default_str();
  app.add_option("--breaking-grace", grace,
                 "How long no live instance may need the old schema before a breaking "
                 "migration is applied automatically (default: --lease-ttl + 30s)")
      ->envname("SCHEMAGATE_BREAKING_GRACE");
  app.add_option("--metrics-listen", metrics_listen,
                 "Serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 0.0.0.0:9090)")
      ->envname("SCHEMAGATE_METRICS_LISTEN");
  app.add_option("--lint", lint_mode,
                 "error: refuse to apply a pending migration with lint errors; warn: only log "
                 "them")
      ->envname("SCHEMAGATE_LINT")
      ->check(CLI::IsMember({"error", "warn"}))
      ->capture_default_str();
  app.add_option("--backup-dir", backup_dir,
                 "Before every run that changes the schema, pg_dump (custom format) into this "
                 "directory; a failed backup stops the run")
      ->envname("SCHEMAGATE_BACKUP_DIR");
  app.add_option("--backup-command", backup_command,
                 "Your own backup instead of pg_dump: run with /bin/sh -c, must write "
                 "$SCHEMAGATE_BACKUP_PATH (also given: SCHEMAGATE_DATABASE_URL, SCHEMAGATE_RUN_ID)")
      ->envname("SCHEMAGATE_BACKUP_COMMAND");
  app.add_flag("--reflection", reflection, "Serve gRPC server reflection")
      ->envname("SCHEMAGATE_REFLECTION");
  app.add_option("--log-format", log_format, "text or json")
      ->envname("SCHEMAGATE_LOG_FORMAT")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_flag("-v,--verbose", verbose, "Log debug lines too");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  // SCHEMAGATE_PARSE_ONLY=1: check the command line and stop (used by the
  // test that every command line under deploy/ is accepted).
  if (EnvOr("SCHEMAGATE_PARSE_ONLY") == "1") return kExitOk;
  ConfigureLog("schemagated", log_format == "json" ? LogFormat::kJson : LogFormat::kText,
               verbose ? LogLevel::kDebug : LogLevel::kInfo);
  if (database_url.empty()) database_url = EnvOr("DATABASE_URL");
  if (database_url.empty()) {
    std::fprintf(stderr,
                 "schemagated: no database: pass --database-url or set "
                 "SCHEMAGATE_DATABASE_URL (or DATABASE_URL)\n");
    return kExitUsage;
  }
  CoordinatorOptions options;
  options.coordinator_id = id.empty() ? DefaultCoordinatorId() : id;
  options.manual = apply_mode == "manual";
  options.runner.coordinator_id = options.coordinator_id;
  options.runner.lock_retries = lock_retries;
  for (auto [flag, text, out] :
       {std::make_tuple("--lock-timeout", &lock_timeout, &options.runner.lock_timeout),
        std::make_tuple("--statement-timeout", &statement_timeout,
                        &options.runner.statement_timeout),
        std::make_tuple("--resync-interval", &resync, &options.resync_interval),
        std::make_tuple("--lease-ttl", &lease, &options.lease_ttl)}) {
    absl::StatusOr<absl::Duration> d = ParseFlagDuration(flag, *text);
    if (!d.ok()) {
      std::fprintf(stderr, "schemagated: %s\n", std::string(d.status().message()).c_str());
      return kExitUsage;
    }
    *out = *d;
  }
  options.breaking_grace = options.lease_ttl + absl::Seconds(30);
  if (!grace.empty()) {
    absl::StatusOr<absl::Duration> d = ParseFlagDuration("--breaking-grace", grace);
    if (!d.ok()) {
      std::fprintf(stderr, "schemagated: %s\n", std::string(d.status().message()).c_str());
      return kExitUsage;
    }
    options.breaking_grace = *d;
  }
  if (options.lease_ttl < absl::Seconds(1)) {
    std::fprintf(stderr, "schemagated: --lease-ttl must be at least 1s\n");
    return kExitUsage;
  }
  if (options.resync_interval < absl::Milliseconds(100)) {
    std::fprintf(stderr, "schemagated: --resync-interval must be at least 100ms\n");
    return kExitUsage;
  }

  if (!backup_dir.empty() || !backup_command.empty()) {
    BackupOptions backup;
    backup.directory = backup_dir;
    backup.command = backup_command;
    backup.database_url = database_url;
    options.runner.backup = [backup](const std::string& run_id) -> absl::StatusOr<std::string> {
      absl::StatusOr<BackupResult> result = RunBackup(backup, run_id);
      if (!result.ok()) return result.status();
      return absl::StrCat(result->path, " (", result->bytes, " bytes, ",
                          absl::FormatDuration(result->duration), ")");
    };
  }
  std::vector<std::string> warnings;
  absl::StatusOr<MigrationSet> set = MigrationSet::LoadDirectory(migrations_dir, &warnings);
  for (const std::string& warning : warnings) LogWarning("%s", warning);
  if (!set.ok()) {
    LogError("refusing to start: %s", set.status().message());
    return kExitUsage;
  }
  LogInfo("loaded %d migration(s) from %s (head %d)", set->migrations().size(), migrations_dir,
          set->Head());
  LintOptions lint_options;
  lint_options.default_lock_timeout = options.runner.lock_timeout;
  for (const Migration& m : set->migrations()) {
    std::vector<LintFinding> findings = LintMigration(m, lint_options);
    std::string errors;
    for (const LintFinding& f : findings) {
      LogWarning("lint: %s", FormatFinding(f));
      if (f.severity == LintSeverity::kError) {
        absl::StrAppend(&errors, errors.empty() ? "" : "; ", f.path, ":", f.line, ": ",
                        f.message, " [", f.rule, "]");
      }
    }
    if (!errors.empty() && lint_mode == "error") options.runner.refused_by_lint[m.version] = errors;
  }

  PgStoreOptions store_options;
  store_options.conninfo = database_url;
  store_options.schema = schema;
  store_options.coordinator_id = options.coordinator_id;
  if (!lock_key.empty()) {
    absl::StatusOr<int64_t> key = ParseLockKey(lock_key);
    if (!key.ok()) {
      std::fprintf(stderr, "schemagated: %s\n", std::string(key.status().message()).c_str());
      return kExitUsage;
    }
    store_options.lock_key = *key;
  }

  // Signals are taken by sigwait below; every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Coordinator coordinator(options, std::move(*set), std::make_unique<PgStore>(store_options),
                          std::make_unique<PgListener>(database_url));
  OperatorServiceOptions operator_options;
  operator_options.schema = schema;
  operator_options.database = RedactSecrets(database_url);
  RpcMetrics rpc_metrics;
  ServerOptions server_options;
  server_options.listen = listen;
  server_options.reflection = reflection;
  server_options.rpc_metrics = &rpc_metrics;
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
      CoordinatorServer::Start(&coordinator, operator_options, server_options);
  if (!server.ok()) {
    LogError("%s", server.status().message());
    return kExitRuntime;
  }
  std::unique_ptr<MetricsServer> metrics;
  if (!metrics_listen.empty()) {
    absl::StatusOr<std::unique_ptr<MetricsServer>> started = MetricsServer::Start(
        metrics_listen, [&] { return RenderMetrics(coordinator, &rpc_metrics); });
    if (!started.ok()) {
      LogError("%s", started.status().message());
      return kExitRuntime;
    }
    metrics = std::move(*started);
    LogInfo("metrics on http://%s:%d/metrics", metrics_listen.substr(0, metrics_listen.rfind(':')),
            metrics->port());
  }
  coordinator.Start();
  const std::string host = listen.substr(0, listen.rfind(':'));
  LogInfo("coordinator %s serving on %s:%d (apply=%s, schema %s, database %s)",
          options.coordinator_id, host, (*server)->port(), apply_mode, schema,
          RedactSecrets(database_url));

  int signal_number = 0;
  while (sigwait(&signals, &signal_number) == 0) {
    if (signal_number == SIGHUP) {
      LogInfo("SIGHUP: re-reading the database state");
      coordinator.RequestRefresh();
      continue;
    }
    break;
  }
  LogInfo("received %s: ending streams with UNAVAILABLE and shutting down",
          signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  (*server)->Shutdown(absl::Seconds(5));
  metrics.reset();
  LogInfo("stopped");
  return kExitOk;
}

}  // namespace
}  // namespace schemagate

int main(int argc, char** argv) { return schemagate::Main(argc, argv); }
