#include "coordinator/daemon/daemon.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/base/conninfo.h"
#include "coordinator/base/flags.h"
#include "coordinator/base/log.h"
#include "coordinator/engine/lint_policy.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/fleet/coordinator.h"
#include "coordinator/postgres/backup.h"
#include "coordinator/postgres/catalog.h"
#include "coordinator/postgres/pg_store.h"
#include "coordinator/server/access.h"
#include "coordinator/server/http_server.h"
#include "coordinator/server/metrics.h"
#include "coordinator/server/request_limits.h"
#include "coordinator/server/server.h"
#include "coordinator/server/stream_quota.h"

namespace schemagate {
namespace {

constexpr int kExitOk = kDaemonExitOk;
constexpr int kExitRuntime = kDaemonExitRuntime;
constexpr int kExitUsage = kDaemonExitUsage;

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
    LogWarning(
        "tokens are checked but --listen %s is not loopback and TLS is off: tokens "
        "travel in clear text; add --tls-cert and --tls-key",
        listen);
  }
  if (!policy->enabled() && !loopback) {
    LogWarning(
        "no --operator-token-file: anyone who reaches %s can apply, roll back and "
        "repair migrations",
        listen);
  }
  LogInfo("access: %s, %s",
          tls ? (flags.tls_client_ca.empty() ? "TLS" : "mutual TLS") : "plaintext (no TLS)",
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

}  // namespace

const char kDaemonHelp[] =
    "schemagated: serialises schema migrations for a fleet of application instances.\n"
    "Holds a PostgreSQL advisory lock for every run, applies pending migrations\n"
    "(--apply=auto) and tells each app's schemagate-agent when the schema fits.\n\n"
    "Example:\n"
    "  schemagated --database-url postgres://app@db:5432/app \\\n"
    "              --migrations-dir ./migrations --listen 0.0.0.0:50051\n\n"
    "Every flag can also be set as SCHEMAGATE_<FLAG> (e.g. SCHEMAGATE_DATABASE_URL);\n"
    "DATABASE_URL is accepted too.";

void AddDaemonFlags(CLI::App* app_ptr, DaemonFlags* flags) {
  CLI::App& app = *app_ptr;
  app.add_option("--database-url", flags->database_url,
                 "PostgreSQL URL or key=value conninfo (direct connection, not a transaction "
                 "pooler)")
      ->envname("SCHEMAGATE_DATABASE_URL");
  app.add_option("--migrations-dir", flags->migrations_dir,
                 "Directory of VERSION_name.up.sql files (or goose, dbmate or Flyway files)")
      ->envname("SCHEMAGATE_MIGRATIONS_DIR")
      ->capture_default_str();
  app.add_option("--format", flags->format,
                 "The set's file format (docs/formats.md); auto: told from the files, a "
                 "directory mixing formats is refused")
      ->envname("SCHEMAGATE_FORMAT")
      ->check(CLI::IsMember(SetFormatNames()))
      ->capture_default_str();
  app.add_option("--listen", flags->listen, "gRPC address host:port (port 0: any free port)")
      ->envname("SCHEMAGATE_LISTEN")
      ->capture_default_str();
  app.add_option("--apply", flags->apply_mode,
                 "auto: apply pending migrations as soon as possible; manual: wait for "
                 "'schemagatectl apply'")
      ->envname("SCHEMAGATE_APPLY")
      ->check(CLI::IsMember({"auto", "manual"}))
      ->capture_default_str();
  app.add_option("--schema", flags->schema, "Schema holding schemagate's bookkeeping tables")
      ->envname("SCHEMAGATE_SCHEMA")
      ->capture_default_str();
  app.add_option("--lock-key", flags->lock_key,
                 "Advisory lock key (number or text); default derived from database and schema")
      ->envname("SCHEMAGATE_LOCK_KEY");
  app.add_option("--id", flags->id, "Coordinator id recorded in history (default host-pid)")
      ->envname("SCHEMAGATE_ID");
  app.add_option("--lock-timeout", flags->lock_timeout,
                 "Default lock_timeout for each migration (directive overrides)")
      ->envname("SCHEMAGATE_LOCK_TIMEOUT")
      ->capture_default_str();
  app.add_option("--statement-timeout", flags->statement_timeout,
                 "Default statement_timeout for each migration; 0 = none")
      ->envname("SCHEMAGATE_STATEMENT_TIMEOUT")
      ->capture_default_str();
  app.add_option("--lock-retries", flags->lock_retries,
                 "Retries of a migration whose lock_timeout tripped (with backoff)")
      ->envname("SCHEMAGATE_LOCK_RETRIES")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  app.add_option("--resync-interval", flags->resync, "Full state re-read besides LISTEN/NOTIFY")
      ->envname("SCHEMAGATE_RESYNC_INTERVAL")
      ->capture_default_str();
  app.add_option("--lease-ttl", flags->lease,
                 "An attached instance counts as live this long after its last heartbeat")
      ->envname("SCHEMAGATE_LEASE_TTL")
      ->capture_default_str();
  app.add_option("--breaking-grace", flags->grace,
                 "How long no live instance may need the old schema before a breaking "
                 "migration is applied automatically (default: --lease-ttl + 30s)")
      ->envname("SCHEMAGATE_BREAKING_GRACE");
  app.add_flag("--allow-out-of-order", flags->allow_out_of_order,
               "Apply a pending migration whose version is below the applied head (added "
               "after newer ones ran), in version order; without it every run is refused "
               "until it is renumbered")
      ->envname("SCHEMAGATE_ALLOW_OUT_OF_ORDER");
  app.add_flag("--allow-non-empty", flags->allow_non_empty,
               "Run migrations although the database has tables and no migration is recorded "
               "(a set that starts on top of those tables, or another app's tables in a shared "
               "database); without it nothing runs until 'schemagatectl baseline' adopts them")
      ->envname("SCHEMAGATE_ALLOW_NON_EMPTY");
  app.add_flag("--adopt", flags->adopt,
               "On a database another tool migrated (goose, dbmate, golang-migrate, Flyway, "
               "Alembic) and schemagate has recorded nothing on: adopt that tool's applied "
               "versions under the lock before the first run, as 'schemagatectl adopt' does; "
               "without it nothing runs until they are adopted (docs/coming-from-*.md)")
      ->envname("SCHEMAGATE_ADOPT");
  app.add_option("--http-listen,--metrics-listen", flags->http_listen,
                 "Serve HTTP on HOST:PORT (e.g. 0.0.0.0:9090): Prometheus metrics at /metrics, "
                 "a liveness answer at /healthz. --metrics-listen (SCHEMAGATE_METRICS_LISTEN) "
                 "is the older name")
      ->envname("SCHEMAGATE_HTTP_LISTEN");
  app.add_option("--lint", flags->lint_mode,
                 "error: refuse to start while a migration has a lint error (an unmarked drop "
                 "or rename), listing each with file:line; warn: only log them")
      ->envname("SCHEMAGATE_LINT")
      ->check(CLI::IsMember({"error", "warn"}))
      ->capture_default_str();
  app.add_option("--lint-from", flags->lint_from,
                 "Adopting an existing set: lint findings of migrations at or below VERSION "
                 "(written before schemagate) are logged, never refused. One file instead: "
                 "'-- schemagate:lint-ignore=RULE reason: WHY'")
      ->envname("SCHEMAGATE_LINT_FROM");
  app.add_option(
         "--backup-dir", flags->backup_dir,
         "Before every run that changes the schema, pg_dump (custom format) into this "
         "directory; a failed backup stops the run")
      ->envname("SCHEMAGATE_BACKUP_DIR");
  app.add_option("--backup-command", flags->backup_command,
                 "Your own backup instead of pg_dump: run with /bin/sh -c, must write "
                 "$SCHEMAGATE_BACKUP_PATH (also given: SCHEMAGATE_DATABASE_URL, SCHEMAGATE_RUN_ID)")
      ->envname("SCHEMAGATE_BACKUP_COMMAND");
  app.add_option("--tls-cert", flags->access.tls_cert,
                 "Serve TLS with this PEM certificate (chain); needs --tls-key")
      ->envname("SCHEMAGATE_TLS_CERT");
  app.add_option("--tls-key", flags->access.tls_key, "PEM private key of --tls-cert")
      ->envname("SCHEMAGATE_TLS_KEY");
  app.add_option("--tls-client-ca", flags->access.tls_client_ca,
                 "Mutual TLS: require client certificates signed by this PEM CA bundle")
      ->envname("SCHEMAGATE_TLS_CLIENT_CA");
  app.add_option("--operator-token-file", flags->access.operator_token_file,
                 "File holding the operator token (opens every RPC); with it every call but "
                 "health needs a token. Re-read on SIGHUP")
      ->envname("SCHEMAGATE_OPERATOR_TOKEN_FILE");
  app.add_option("--agent-token-file", flags->access.agent_token_file,
                 "File holding the agent token (opens the agent service only). Re-read on "
                 "SIGHUP")
      ->envname("SCHEMAGATE_AGENT_TOKEN_FILE");
  app.add_option("--max-streams-per-client", flags->max_streams_per_client,
                 "Open Wait/Attach/WatchEvents streams one client host may hold "
                 "(RESOURCE_EXHAUSTED above); 0 = unlimited")
      ->envname("SCHEMAGATE_MAX_STREAMS_PER_CLIENT")
      ->check(CLI::Range(0, 1 << 30))
      ->capture_default_str();
  app.add_option("--max-request-bytes", flags->max_request_bytes,
                 "Largest request message accepted (RESOURCE_EXHAUSTED above)")
      ->envname("SCHEMAGATE_MAX_REQUEST_BYTES")
      ->check(CLI::Range(4096, 64 << 20))
      ->capture_default_str();
  app.add_flag("--reflection", flags->reflection, "Serve gRPC server reflection")
      ->envname("SCHEMAGATE_REFLECTION");
  app.add_option("--log-format", flags->log_format, "text or json")
      ->envname("SCHEMAGATE_LOG_FORMAT")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_flag("-v,--verbose", flags->verbose, "Log debug lines too");
}

int RunDaemon(DaemonFlags flags) {
  ConfigureLog("schemagated", flags.log_format == "json" ? LogFormat::kJson : LogFormat::kText,
               flags.verbose ? LogLevel::kDebug : LogLevel::kInfo);
  if (flags.database_url.empty()) flags.database_url = EnvOr("DATABASE_URL");
  // The older name of SCHEMAGATE_HTTP_LISTEN.
  if (flags.http_listen.empty()) flags.http_listen = EnvOr("SCHEMAGATE_METRICS_LISTEN");
  if (flags.database_url.empty()) {
    std::fprintf(stderr,
                 "schemagated: no database: pass --database-url or set "
                 "SCHEMAGATE_DATABASE_URL (or DATABASE_URL)\n");
    return kExitUsage;
  }
  CoordinatorOptions options;
  options.coordinator_id = flags.id.empty() ? DefaultCoordinatorId() : flags.id;
  options.manual = flags.apply_mode == "manual";
  options.runner.coordinator_id = options.coordinator_id;
  options.runner.lock_retries = flags.lock_retries;
  options.runner.permissions.allow_out_of_order = flags.allow_out_of_order;
  options.runner.permissions.allow_non_empty = flags.allow_non_empty;
  options.runner.permissions.adopt = flags.adopt;
  for (auto [flag, text, out] :
       {std::make_tuple("--lock-timeout", &flags.lock_timeout, &options.runner.lock_timeout),
        std::make_tuple("--statement-timeout", &flags.statement_timeout,
                        &options.runner.statement_timeout),
        std::make_tuple("--resync-interval", &flags.resync, &options.resync_interval),
        std::make_tuple("--lease-ttl", &flags.lease, &options.lease_ttl)}) {
    absl::StatusOr<absl::Duration> d = ParseFlagDuration(flag, *text);
    if (!d.ok()) {
      std::fprintf(stderr, "schemagated: %s\n", std::string(d.status().message()).c_str());
      return kExitUsage;
    }
    *out = *d;
  }
  options.breaking_grace = options.lease_ttl + absl::Seconds(30);
  if (!flags.grace.empty()) {
    absl::StatusOr<absl::Duration> d = ParseFlagDuration("--breaking-grace", flags.grace);
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

  if (!flags.backup_dir.empty() || !flags.backup_command.empty()) {
    BackupOptions backup;
    backup.directory = flags.backup_dir;
    backup.command = flags.backup_command;
    backup.database_url = flags.database_url;
    options.runner.backup = [backup](const std::string& run_id) -> absl::StatusOr<std::string> {
      absl::StatusOr<BackupResult> result = RunBackup(backup, run_id);
      if (!result.ok()) return result.status();
      return absl::StrCat(result->path, " (", result->bytes, " bytes, ",
                          absl::FormatDuration(result->duration), ")");
    };
  }
  // The schema as each run leaves it, for validate's drift check.
  auto describe_schema = [flags] { return DescribeSchema(flags.database_url, flags.schema); };
  options.runner.describe_schema = describe_schema;
  LintPolicy lint_policy;
  lint_policy.mode = flags.lint_mode == "warn" ? LintMode::kWarn : LintMode::kError;
  lint_policy.options.default_lock_timeout = options.runner.lock_timeout;
  if (!flags.lint_from.empty()) {
    absl::StatusOr<int64_t> version = ParseVersion(flags.lint_from);
    if (!version.ok()) {
      std::fprintf(stderr, "schemagated: --lint-from: %s\n",
                   std::string(version.status().message()).c_str());
      return kExitUsage;
    }
    lint_policy.lint_from = *version;
  }
  absl::StatusOr<SetFormat> format = ParseSetFormat(flags.format);
  if (!format.ok()) {
    std::fprintf(stderr, "schemagated: %s\n", std::string(format.status().message()).c_str());
    return kExitUsage;
  }
  // The same checks at start and whenever the set is re-read from disk.
  auto load_set = [flags, lint_policy, format = *format]() -> absl::StatusOr<MigrationSet> {
    std::vector<std::string> warnings;
    absl::StatusOr<MigrationSet> set =
        LoadLintedSet(flags.migrations_dir, format, lint_policy, &warnings);
    for (const std::string& warning : warnings) LogWarning("%s", warning);
    return set;
  };
  absl::StatusOr<MigrationSet> set = load_set();
  if (!set.ok()) {
    LogError("refusing to start: %s", set.status().message());
    return kExitUsage;
  }
  LogInfo("loaded %d migration(s) from %s (%s format, head %d)", set->migrations().size(),
          flags.migrations_dir, SetFormatName(set->format()), set->Head());
  options.load_set = load_set;
  options.set_fingerprint = [flags] { return DirectoryFingerprint(flags.migrations_dir); };

  PgStoreOptions store_options;
  store_options.conninfo = flags.database_url;
  store_options.schema = flags.schema;
  store_options.coordinator_id = options.coordinator_id;
  if (!flags.lock_key.empty()) {
    absl::StatusOr<int64_t> key = ParseLockKey(flags.lock_key);
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
  if (absl::Status direct = CheckDirectSession(flags.database_url);
      absl::IsFailedPrecondition(direct)) {
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
                          std::make_unique<PgListener>(flags.database_url));
  OperatorServiceOptions operator_options;
  operator_options.schema = flags.schema;
  operator_options.database = RedactSecrets(flags.database_url);
  operator_options.describe_schema = describe_schema;
  RpcMetrics rpc_metrics;
  ServerOptions server_options;
  server_options.listen = flags.listen;
  server_options.reflection = flags.reflection;
  server_options.rpc_metrics = &rpc_metrics;
  server_options.max_streams_per_client = flags.max_streams_per_client;
  server_options.max_request_bytes = flags.max_request_bytes;
  // The policy the server checks; SIGHUP swaps its tokens.
  auto policy = std::make_shared<AccessPolicy>();
  server_options.access = policy;
  if (absl::Status configured =
          ConfigureAccess(flags.access, flags.listen, policy.get(), &server_options);
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
  std::unique_ptr<HttpServer> http;
  if (!flags.http_listen.empty()) {
    HttpRoutes routes;
    routes.metrics = [&] { return RenderMetrics(coordinator, &rpc_metrics); };
    absl::StatusOr<std::unique_ptr<HttpServer>> started =
        HttpServer::Start(flags.http_listen, std::move(routes), "--http-listen");
    if (!started.ok()) {
      LogError("%s", started.status().message());
      return kExitRuntime;
    }
    http = std::move(*started);
    LogInfo("metrics on http://%s:%d/metrics",
            flags.http_listen.substr(0, flags.http_listen.rfind(':')), http->port());
  }
  coordinator.Start();
  const std::string host = flags.listen.substr(0, flags.listen.rfind(':'));
  LogInfo("coordinator %s serving on %s:%d (apply=%s, schema %s, database %s)",
          options.coordinator_id, host, (*server)->port(), flags.apply_mode, flags.schema,
          RedactSecrets(flags.database_url));

  int signal_number = 0;
  while (sigwait(&signals, &signal_number) == 0) {
    if (signal_number == SIGHUP) {
      LogInfo("SIGHUP: re-reading the migration set, the database state%s",
              policy->enabled() ? " and the token files" : "");
      coordinator.ReloadSetIfChanged();
      coordinator.RequestRefresh();
      if (policy->enabled()) {
        absl::StatusOr<AccessTokens> tokens = ReadTokens(flags.access);
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
  http.reset();
  LogInfo("stopped");
  return kExitOk;
}

}  // namespace schemagate
