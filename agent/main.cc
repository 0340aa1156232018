// schemagate-agent: waits until the schema fits the app, then runs it.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "agent/app_target.h"
#include "agent/attach_session.h"
#include "agent/channel.h"
#include "agent/exit_codes.h"
#include "agent/fallback_check.h"
#include "agent/security_flags.h"
#include "agent/supervisor.h"
#include "agent/wait_client.h"
#include "coordinator/base/flags.h"
#include "coordinator/base/log.h"

// What the static build's libpq lacks (agent/static_libpq_stubs.c).
#ifdef SCHEMAGATE_STATIC_AGENT
#define SG_FALLBACK_LIMITS \
  "; this static build's libpq has no Kerberos (GSSAPI) and no LDAP service lookups"
#else
#define SG_FALLBACK_LIMITS ""
#endif

namespace schemagate {
namespace {

// $HOSTNAME (the pod name in Kubernetes) or the host name, then this
// process's pid and a random suffix: unique per agent process even where
// several run on one host (blue/green on a VM, systemd workers) or every
// container is pid 1. Drawn once: re-attaches keep it.
std::string DefaultInstanceId() {
  std::string host = EnvOr("HOSTNAME");
  if (host.empty()) {
    char name[256] = {0};
    gethostname(name, sizeof(name) - 1);
    host = name;
  }
  if (host.empty()) host = "agent";
  std::random_device device;
  return absl::StrCat(host, "-", getpid(), "-", absl::Hex(device() & 0xffff, absl::kZeroPad4));
}

struct CommonFlags {
  std::string coordinators = "127.0.0.1:50051";
  AppTargetFlags target;
  std::string timeout;
  std::string instance_id;
  std::string fallback_database_url;
  std::string fallback_schema = "schemagate";
  ClientSecurityFlags security;
};

void AddCommonFlags(CLI::App* cmd, CommonFlags* flags) {
  cmd->add_option("--coordinator", flags->coordinators,
                  "Coordinator address host:port; a comma-separated list is tried in turn")
      ->envname("SCHEMAGATE_COORDINATOR")
      ->capture_default_str();
  cmd->add_option("--migrations-dir", flags->target.migrations_dir,
                  "The app's own migrations: K = highest version, R = highest non-breaking, "
                  "checksums compared")
      ->envname("SCHEMAGATE_MIGRATIONS_DIR");
  cmd->add_option("--format", flags->target.format,
                  "Format of --migrations-dir (docs/formats.md); auto: told from the files")
      ->envname("SCHEMAGATE_FORMAT")
      ->check(CLI::IsMember(SetFormatNames()))
      ->capture_default_str();
  cmd->add_option("--known", flags->target.known, "K: highest migration version the app knows")
      ->envname("SCHEMAGATE_KNOWN");
  cmd->add_option("--required", flags->target.required,
                  "R: highest version the app needs applied")
      ->envname("SCHEMAGATE_REQUIRED");
  cmd->add_option("--app", flags->target.app, "Application name (shown to operators)")
      ->envname("SCHEMAGATE_APP");
  cmd->add_option("--app-version", flags->target.app_version, "Application version")
      ->envname("SCHEMAGATE_APP_VERSION");
  cmd->add_option("--instance-id", flags->instance_id,
                  "This instance's id, unique per agent process (default: $HOSTNAME-PID-XXXX, "
                  "$HOSTNAME being the pod name in Kubernetes); a second agent under an id "
                  "that a live agent holds is refused (exit 2)")
      ->envname("SCHEMAGATE_INSTANCE_ID");
  cmd->add_option("--timeout", flags->timeout, "Give up after this long (e.g. 30s, 5m)")
      ->envname("SCHEMAGATE_TIMEOUT");
  cmd->add_option("--fallback-database-url", flags->fallback_database_url,
                  "When no coordinator answers, read schemagate's bookkeeping table in this "
                  "database directly (read-only; off by default)" SG_FALLBACK_LIMITS)
      ->envname("SCHEMAGATE_FALLBACK_DATABASE_URL");
  cmd->add_option("--schema", flags->fallback_schema,
                  "Bookkeeping schema for --fallback-database-url")
      ->envname("SCHEMAGATE_SCHEMA")
      ->capture_default_str();
  AddClientSecurityFlags(cmd, &flags->security);
}

absl::StatusOr<WaitOptions> BuildOptions(const CommonFlags& flags, absl::Duration default_timeout) {
  WaitOptions options;
  options.coordinators = SplitCoordinators(flags.coordinators);
  if (options.coordinators.empty()) {
    return absl::InvalidArgumentError("--coordinator is empty; give host:port[,host:port...]");
  }
  absl::StatusOr<AppTarget> target = BuildAppTarget(flags.target);
  if (!target.ok()) return target.status();
  options.target = *target;
  options.instance_id = flags.instance_id.empty() ? DefaultInstanceId() : flags.instance_id;
  absl::StatusOr<ClientSecurity> security = LoadClientSecurity(flags.security);
  if (!security.ok()) return security.status();
  options.security = *std::move(security);
  if (std::string warning = CleartextTokenWarning(options.security, options.coordinators);
      !warning.empty()) {
    LogWarning("%s", warning);
  }
  options.timeout = default_timeout;
  if (!flags.timeout.empty()) {
    absl::StatusOr<absl::Duration> timeout = ParseFlagDuration("--timeout", flags.timeout);
    if (!timeout.ok()) return timeout.status();
    options.timeout = *timeout;
  }
  if (!flags.fallback_database_url.empty()) {
    options.fallback = [url = flags.fallback_database_url,
                        schema = flags.fallback_schema](const AppTarget& target) {
      return CheckDatabaseDirectly(url, schema, target);
    };
  }
  options.log = [](const std::string& line) { LogLine(LogLevel::kInfo, line); };
  return options;
}

// Logs why the agent ends, with a hint when a plaintext agent found no
// coordinator (a TLS coordinator refuses plaintext connections).
void LogOutcome(const WaitOptions& options, const WaitOutcome& outcome) {
  if (outcome.exit_code == kExitReady) {
    LogInfo("%s", outcome.message);
  } else if (outcome.exit_code == kExitUnreachable && !options.security.tls) {
    LogError("%s (if the coordinator serves TLS, pass --tls-ca)", outcome.message);
  } else if (outcome.exit_code == kExitUnreachable && options.security.cert_chain_pem.empty()) {
    LogError("%s (if the coordinator requires client certificates, pass --tls-cert and "
             "--tls-key)",
             outcome.message);
  } else {
    LogError("%s", outcome.message);
  }
}

int Main(int argc, char** argv) {
  // Before any thread exists: the supervisor's thread takes these signals.
  ProcessSupervisor::BlockSignals();
  ConfigureLog("schemagate-agent", LogFormat::kText, LogLevel::kInfo);

  CLI::App app{
      "schemagate-agent: waits until the database schema fits this app, then starts it.\n\n"
      "Examples:\n"
      "  schemagate-agent wait --coordinator sg-0:50051,sg-1:50051 \\\n"
      "      --migrations-dir /app/migrations --app billing --app-version 1.7.0 -- ./server\n"
      "  schemagate-agent check --known 20260101120000     # readiness probe\n\n"
      "Exit codes: 0 ready (or the app's own code), 2 usage (also: --instance-id held by\n"
      "another live agent; the app is stopped), 3 timed out / not ready,\n"
      "4 incompatible or checksum mismatch, 5 failed migration needs an operator,\n"
      "6 not authorised, 7 no coordinator reachable.",
      "schemagate-agent"};
  app.require_subcommand(1);

  CommonFlags wait_flags;
  std::vector<std::string> command;
  bool exec = false, keep_waiting = false;
  CLI::App* wait = app.add_subcommand(
      "wait", "Wait (pushed updates, no polling) until the schema fits, then run -- CMD");
  AddCommonFlags(wait, &wait_flags);
  wait->add_flag("--exec", exec,
                 "Replace the agent with CMD (exec) instead of supervising it");
  wait->add_flag("--keep-waiting", keep_waiting,
                 "Keep waiting on FAILED, INCOMPATIBLE or MISMATCH instead of exiting");
  wait->add_option("command", command, "The app to run once ready, after --");

  CommonFlags check_flags;
  CLI::App* check = app.add_subcommand(
      "check", "Ask once whether the schema fits (for readiness probes); exit 0 when READY");
  AddCommonFlags(check, &check_flags);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitReady : kExitUsage;
  }

  // SCHEMAGATE_PARSE_ONLY=1: check the command line and stop (used by the
  // test that every command line under deploy/ is accepted).
  if (EnvOr("SCHEMAGATE_PARSE_ONLY") == "1") return kExitReady;
  if (check->parsed()) {
    absl::StatusOr<WaitOptions> options = BuildOptions(check_flags, absl::Seconds(10));
    if (!options.ok()) {
      LogError("%s", options.status().message());
      return kExitUsage;
    }
    ReadinessClient client;
    WaitOutcome outcome = client.Check(*options);
    LogOutcome(*options, outcome);
    return outcome.exit_code;
  }

  absl::StatusOr<WaitOptions> options = BuildOptions(wait_flags, absl::Minutes(5));
  if (!options.ok()) {
    LogError("%s", options.status().message());
    return kExitUsage;
  }
  options->keep_waiting = keep_waiting;
  if (exec && command.empty()) {
    LogError("--exec needs a command after --");
    return kExitUsage;
  }
  ReadinessClient client;
  ProcessSupervisor supervisor([&client](int) { client.Cancel(); });
  WaitOutcome outcome = client.Wait(*options);
  if (const int sig = supervisor.stop_signal(); sig != 0) {
    LogInfo("received signal %d while waiting; exiting", sig);
    return 128 + sig;
  }
  if (outcome.exit_code != kExitReady) {
    LogOutcome(*options, outcome);
    return outcome.exit_code;
  }
  if (command.empty()) return kExitReady;
  if (exec) {
    LogInfo("schema ready; exec %s", command[0]);
    return ProcessSupervisor::Exec(command);
  }
  LogInfo("schema ready; starting %s", command[0]);
  // While the app lives, this instance counts in the fleet (contract
  // migrations it predates wait for it).
  AttachSession attach(*options);
  // Two processes under one id would keep each other's instance alive (or
  // remove it under the other): the one refused stops its app.
  std::atomic<bool> refused{false};
  attach.set_on_refused([&](const std::string& message) {
    LogError("%s; stopping %s (exit %d)", message, command[0], kExitUsage);
    refused = true;
    supervisor.Terminate(SIGTERM);
  });
  attach.Start();
  const int code = supervisor.Run(command);
  LogInfo("%s exited with %d", command[0], code);
  attach.Stop();
  if (refused) return kExitUsage;
  return code;
}

}  // namespace
}  // namespace schemagate

int main(int argc, char** argv) { return schemagate::Main(argc, argv); }
