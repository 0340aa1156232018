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
#include "coordinator/access.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/backup.h"
#include "coordinator/conninfo.h"
#include "coordinator/coordinator.h"
#include "coordinator/flags.h"
#include "coordinator/lint_policy.h"
#include "coordinator/log.h"
#include "coordinator/metrics.h"
#include "coordinator/migration_set.h"
#include "coordinator/pg_store.h"
#include "coordinator/schema_fingerprint.h"
#include "coordinator/request_limits.h"
#include "coordinator/server.h"
#include "coordinator/stream_quota.h"

namespace schemagate {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

struct AccessFlags {
  std::string tls_cert, tls_key, tls_client_ca;
  std::string operator_token_file, agent_token_file;
};

// Reads the token files (again on SIGHUP). Refuses an unreadable or empty
// file rather than starting open.
absl::StatusOr<AccessTokens> ReadTokens(const AccessFlags& flags) {
  AccessTokens tokens;
  if (!flags.operator_token_file.empty()) {
    absl::StatusOr<std::string> token =
        ReadTokenFile("--operator-token-file", flags.operator_token_file);
    if (!token.ok()) return token.status();
    tokens.operator_token = *token;
  }
  if (!flags.agent_token_file.empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile("--agent-token-file", flags.agent_token_file);
    if (!token.ok()) return token.status();
    tokens.agent_token = *token;
  }
  if (!tokens.agent_token.empty() && tokens.agent_token == tokens.operator_token) {
    return absl::InvalidArgumentError(
        "--agent-token-file and --operator-token-file hold the same token; give agents their "
        "own");
  }
  return tokens;
}

// TLS into `server`, tokens into `policy`; INVALID_ARGUMENT for a usage error.
absl::Status ConfigureAccess(const AccessFlags& flags, const std::string& listen,
                             AccessPolicy* policy, ServerOptions* server) {
  if (flags.tls_cert.empty() != flags.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together; give both");
  }
  if (!flags.tls_client_ca.empty() && flags.tls_cert.empty()) {
    return absl::InvalidArgumentError(
        "--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key");
  }
  if (!flags.agent_token_file.empty() && flags.operator_token_file.empty()) {
    return absl::InvalidArgumentError(
        "--agent-token-file needs --operator-token-file too (otherwise nobody could call the "
        "operator service)");
  }
  if (!flags.tls_cert.empty()) {
    for (auto [flag, path, out] :
         {std::make_tuple("--tls-cert", &flags.tls_cert, &server->tls_cert_pem),
          std::make_tuple("--tls-key", &flags.tls_key, &server->tls_key_pem),
          std::make_tuple("--tls-client-ca", &flags.tls_client_ca, &server->tls_client_ca_pem)}) {
      if (path->empty()) continue;
      absl::StatusOr<std::string> pem = ReadPemFile(flag, *path);
      if (!pem.ok()) return pem.status();
      *out = *pem;
    }
    if (absl::Status checked =
            CheckCertificateAndKey("--tls-cert", flags.tls_cert, server->tls_cert_pem, "--tls-key",
                                   flags.tls_key, server->tls_key_pem);
        !checked.ok()) {
      return checked;
    }
    if (!flags.tls_client_ca.empty()) {
      if (absl::Status checked = CheckCertificateBundle("--tls-client-ca", flags.tls_client_ca,
                                                        server->tls_client_ca_pem);
          !checked.ok()) {
        return checked;
      }
    }
  }
  absl::StatusOr<AccessTokens> tokens = ReadTokens(flags);
  if (!tokens.ok()) return tokens.status();
  policy->SetTokens(*tokens);
  const bool tls = !flags.tls_cert.empty();
  const bool loopback = IsLoopbackHost(AddressHost(listen));
  if (policy->enabled() && !tls && !loopback) {
    LogWarning("tokens are checked but --listen %s is not loopback and TLS is off: tokens "
               "travel in clear text; add --tls-cert and --tls-key",
               listen);
  }
  if (!policy->enabled() && !loopback) {
    LogWarning("no --operator-token-file: anyone who reaches %s can apply, roll back and "
               "repair migrations",
               listen);
  }
  LogInfo("access: %s, %s", tls ? (flags.tls_client_ca.empty() ? "TLS" : "mutual TLS")
                                : "plaintext (no TLS)",
          !policy->enabled()
              ? "no tokens (every call allowed)"
              : (tokens->agent_token.empty() ? "operator token required"
                                             : "operator and agent tokens required"));
  return absl::OkStatus();
}

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
  std::string metrics_listen, lint_mode = "error", lint_from, backup_dir, backup_command;
  std::string lock_timeout = "5s", statement_timeout = "0", resync = "10s", grace, lease = "30s";
  int lock_retries = 5;
  int max_streams_per_client = kDefaultMaxStreamsPerClient;
  int max_request_bytes = kDefaultMaxRequestBytes;
  AccessFlags access;
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
                 "error: refuse to start while a migration has a lint error (an unmarked drop "
                 "or rename), listing each with file:line; warn: only log them")
      ->envname("SCHEMAGATE_LINT")
      ->check(CLI::IsMember({"error", "warn"}))
      ->capture_default_str();
  app.add_option("--lint-from", lint_from,
                 "Adopting an existing set: lint findings of migrations at or below VERSION "
                 "(written before schemagate) are logged, never refused. One file instead: "
                 "'-- schemagate:lint-ignore=RULE reason: WHY'")
      ->envname("SCHEMAGATE_LINT_FROM");
  app.add_option("--backup-dir", backup_dir,
                 "Before every run that changes the schema, pg_dump (custom format) into this "
                 "directory; a failed backup stops the run")
      ->envname("SCHEMAGATE_BACKUP_DIR");
  app.add_option("--backup-command", backup_command,
                 "Your own backup instead of pg_dump: run with /bin/sh -c, must write "
                 "$SCHEMAGATE_BACKUP_PATH (also given: SCHEMAGATE_DATABASE_URL, SCHEMAGATE_RUN_ID)")
      ->envname("SCHEMAGATE_BACKUP_COMMAND");
  app.add_option("--tls-cert", access.tls_cert,
                 "Serve TLS with this PEM certificate (chain); needs --tls-key")
      ->envname("SCHEMAGATE_TLS_CERT");
  app.add_option("--tls-key", access.tls_key, "PEM private key of --tls-cert")
      ->envname("SCHEMAGATE_TLS_KEY");
  app.add_option("--tls-client-ca", access.tls_client_ca,
                 "Mutual TLS: require client certificates signed by this PEM CA bundle")
      ->envname("SCHEMAGATE_TLS_CLIENT_CA");
  app.add_option("--operator-token-file", access.operator_token_file,
                 "File holding the operator token (opens every RPC); with it every call but "
                 "health needs a token. Re-read on SIGHUP")
      ->envname("SCHEMAGATE_OPERATOR_TOKEN_FILE");
  app.add_option("--agent-token-file", access.agent_token_file,
                 "File holding the agent token (opens the agent service only). Re-read on "
                 "SIGHUP")
      ->envname("SCHEMAGATE_AGENT_TOKEN_FILE");
  app.add_option("--max-streams-per-client", max_streams_per_client,
                 "Open Wait/Attach/WatchEvents streams one client host may hold "
                 "(RESOURCE_EXHAUSTED above); 0 = unlimited")
      ->envname("SCHEMAGATE_MAX_STREAMS_PER_CLIENT")
      ->check(CLI::Range(0, 1 << 30))
      ->capture_default_str();
  app.add_option("--max-request-bytes", max_request_bytes,
                 "Largest request message accepted (RESOURCE_EXHAUSTED above)")
      ->envname("SCHEMAGATE_MAX_REQUEST_BYTES")
      ->check(CLI::Range(4096, 64 << 20))
      ->capture_default_str();
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
  // The schema as each run leaves it, for validate's drift check.
  auto describe_schema = [database_url, schema] { return DescribeSchema(database_url, schema); };
  options.runner.describe_schema = describe_schema;
  // The same checks at start and whenever the set is re-read from disk
  // (LoadLintedSet only reads files).
  LintPolicy lint_policy;
  lint_policy.mode = lint_mode == "warn" ? LintMode::kWarn : LintMode::kError;
  lint_policy.options.default_lock_timeout = options.runner.lock_timeout;
  if (!lint_from.empty()) {
    absl::StatusOr<int64_t> version = ParseVersion(lint_from);
    if (!version.ok()) {
      std::fprintf(stderr, "schemagated: --lint-from: %s\n",
                   std::string(version.status().message()).c_str());
      return kExitUsage;
    }
    lint_policy.lint_from = *version;
  }
  auto load_set = [migrations_dir, lint_policy]() -> absl::StatusOr<MigrationSet> {
    std::vector<std::string> warnings;
    absl::StatusOr<MigrationSet> set = LoadLintedSet(migrations_dir, lint_policy, &warnings);
    for (const std::string& warning : warnings) LogWarning("%s", warning);
    return set;
  };
  absl::StatusOr<MigrationSet> set = load_set();
  if (!set.ok()) {
    LogError("refusing to start: %s", set.status().message());
    return kExitUsage;
  }
  LogInfo("loaded %d migration(s) from %s (head %d)", set->migrations().size(), migrations_dir,
          set->Head());
  options.load_set = load_set;
  options.set_fingerprint = [migrations_dir] { return DirectoryFingerprint(migrations_dir); };

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

  // A pooler in front of the database is a configuration error: refuse to
  // start, so that it shows where the coordinator is deployed. A database
  // that cannot be reached yet is not: the coordinator waits it out (and
  // every run checks again before it takes the lock).
  if (absl::Status direct = CheckDirectSession(database_url); absl::IsFailedPrecondition(direct)) {
    LogError("refusing to start: %s", direct.message());
    return kExitUsage;
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
  operator_options.describe_schema = describe_schema;
  RpcMetrics rpc_metrics;
  ServerOptions server_options;
  server_options.listen = listen;
  server_options.reflection = reflection;
  server_options.rpc_metrics = &rpc_metrics;
  server_options.max_streams_per_client = max_streams_per_client;
  server_options.max_request_bytes = max_request_bytes;
  // The policy the server checks; SIGHUP swaps its tokens.
  auto policy = std::make_shared<AccessPolicy>();
  server_options.access = policy;
  if (absl::Status configured = ConfigureAccess(access, listen, policy.get(), &server_options);
      !configured.ok()) {
    LogError("refusing to start: %s", configured.message());
    return kExitUsage;
  }
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
      LogInfo("SIGHUP: re-reading the migration set, the database state%s",
              policy->enabled() ? " and the token files" : "");
      coordinator.ReloadSetIfChanged();
      coordinator.RequestRefresh();
      if (policy->enabled()) {
        absl::StatusOr<AccessTokens> tokens = ReadTokens(access);
        if (tokens.ok()) {
          policy->SetTokens(*tokens);
          LogInfo("token files re-read; calls now need the new tokens");
        } else {
          LogError("keeping the old tokens: %s", tokens.status().message());
        }
      }
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
