// schemagated's command line and the wiring behind it: the top layer, the
// only one that sees every other (PostgreSQL store, coordinator, server).
// coordinator/main.cc parses the flags and calls RunDaemon.
#ifndef SCHEMAGATE_COORDINATOR_DAEMON_DAEMON_H_
#define SCHEMAGATE_COORDINATOR_DAEMON_DAEMON_H_

#include <string>

#include "CLI/CLI.hpp"
#include "coordinator/server/request_limits.h"
#include "coordinator/server/stream_quota.h"

namespace schemagate {

inline constexpr int kDaemonExitOk = 0;
inline constexpr int kDaemonExitRuntime = 1;
inline constexpr int kDaemonExitUsage = 2;

struct AccessFlags {
  std::string tls_cert, tls_key, tls_client_ca;
  std::string operator_token_file, agent_token_file;
};

// Every flag of schemagated, as given (durations still text).
struct DaemonFlags {
  std::string database_url, migrations_dir = "./migrations", format = "auto";
  std::string listen = "127.0.0.1:50051";
  std::string apply_mode = "auto", schema = "schemagate", lock_key, id, log_format = "text";
  std::string http_listen, lint_mode = "error", lint_from, backup_dir, backup_command;
  std::string lock_timeout = "5s", statement_timeout = "0", resync = "10s", grace, lease = "30s";
  int lock_retries = 5;
  int max_streams_per_client = kDefaultMaxStreamsPerClient;
  int max_request_bytes = kDefaultMaxRequestBytes;
  AccessFlags access;
  bool reflection = false, verbose = false, allow_out_of_order = false, allow_non_empty = false,
       adopt = false;
};

// What `schemagated --help` says before the flags.
extern const char kDaemonHelp[];

// Declares every flag on `app`, each with its SCHEMAGATE_<FLAG> variable.
void AddDaemonFlags(CLI::App* app, DaemonFlags* flags);

// Checks the flags, loads and lints the set, starts the coordinator, its
// gRPC server and metrics, and serves until SIGTERM or SIGINT (SIGHUP
// re-reads the set, the database state and the token files). Returns the
// process's exit code: 0 after a clean stop, 2 for a usage or configuration
// error, 1 when it cannot serve.
int RunDaemon(DaemonFlags flags);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_DAEMON_DAEMON_H_
