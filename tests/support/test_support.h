// Shared helpers for the test suites: a fresh PostgreSQL database per test,
// temporary directories of migration files, and child processes of the real
// binaries.
#ifndef SCHEMAGATE_TESTS_SUPPORT_TEST_SUPPORT_H_
#define SCHEMAGATE_TESTS_SUPPORT_TEST_SUPPORT_H_

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/engine/store.h"
#include "gtest/gtest.h"

namespace schemagate::testing {

// SCHEMAGATE_TEST_DATABASE_URL, or "" if unset.
std::string AdminUrl();

// Skips the test when no database is configured, except under CI (CI=true),
// where a missing database is a failure.
#define SG_REQUIRE_DATABASE()                                                        \
  do {                                                                               \
    if (::schemagate::testing::AdminUrl().empty()) {                                 \
      if (std::getenv("CI") != nullptr) FAIL() << "SCHEMAGATE_TEST_DATABASE_URL unset"; \
      GTEST_SKIP() << "set SCHEMAGATE_TEST_DATABASE_URL to run database tests";      \
    }                                                                                \
  } while (0)

// A database created for one test and dropped (with its sessions) after.
class TestDatabase {
 public:
  TestDatabase();
  ~TestDatabase();
  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }
  // Runs SQL on a fresh connection; fails the test on error.
  void Exec(const std::string& sql) const;
  // First column of the first row as text ("" for NULL / no rows).
  std::string Query(const std::string& sql) const;

 private:
  std::string name_;
  std::string url_;
};

// Replaces the database name of a postgres:// URL.
std::string WithDatabase(const std::string& url, const std::string& database);

// `conninfo` (URL or key=value) as key=value conninfo with host and port
// replaced, e.g. to go through a TcpProxy or a PgBouncer.
std::string WithHostPort(const std::string& conninfo, const std::string& host, int port);
// The port `conninfo` names (5432 if none).
int PortOf(const std::string& conninfo);

// An integer from the environment (counts for soak runs), or `fallback`
// when unset or not a positive number.
int EnvInt(const char* name, int fallback);

// First column of the first row of `sql` on a fresh connection to `url`
// ("" for NULL / no rows), or nullopt on any error (server down, missing
// table): for polling a database that a fault may have taken away.
std::optional<std::string> TryQuery(const std::string& url, const std::string& sql);

// A connection kept open for polling: a fresh connection per poll is slow on
// a loaded machine and misses short windows. Reconnects after an error.
// Not thread-safe.
class QueryConnection {
 public:
  explicit QueryConnection(std::string url);
  ~QueryConnection();
  // As TryQuery, on this connection.
  std::optional<std::string> Query(const std::string& sql);

 private:
  struct Session;
  std::string url_;
  std::unique_ptr<Session> session_;
};

// Polls `condition` every 20 ms until it holds; false on timeout.
bool WaitUntil(const std::function<bool()>& condition, absl::Duration timeout);

// A temporary directory removed after the test.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  // Writes `content` to path()/name (creating subdirectories).
  std::string Write(const std::string& name, const std::string& content) const;
  void Remove(const std::string& name) const;

 private:
  std::string path_;
};

// Writes N trivial migrations (each creates table t<N>) into `dir`.
void WriteTrivialMigrations(const TempDir& dir, int first, int count);

// The fleet tests' two releases: both have 0001..0003 (CREATE TABLE t1..t3);
// release 2 adds the breaking 0004_drop_t1.
void WriteTwoReleases(const TempDir& release1, const TempDir& release2);

// Whether `version` has a row in `db`'s schemagate.migrations.
bool IsApplied(const TestDatabase& db, int64_t version);

// Rows for the versions of `set` up to `n`, applied with the set's checksums.
std::vector<AppliedMigration> AppliedUpTo(const MigrationSet& set, int64_t n);

// A live instance of app "api" 1.0 that knows versions up to `known`.
InstanceRecord LiveInstance(const std::string& id, int64_t known);

// Path of a built binary (SCHEMAGATE_BIN_DIR or the build directory).
std::string BinaryPath(const std::string& name);
std::string SourcePath(const std::string& relative);

// A child process with stdout and stderr in a log file.
class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& argv,
               const std::map<std::string, std::string>& env = {});
  ~ChildProcess();
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  std::string Log() const;
  // Waits until the log contains `text`. False on timeout or exit.
  bool WaitForLog(const std::string& text, absl::Duration timeout) const;
  // Waits for exit; returns the exit code (128+N for signal N) or -1 on timeout.
  int Wait(absl::Duration timeout);
  bool running();
  void Signal(int sig);

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int exit_code_ = -1;
  std::string log_path_;
};

// A running schemagated, by default on a port the kernel picks (tests bind
// port 0 and read the port back: a port chosen beforehand can be taken by
// another process before the coordinator binds it).
class CoordinatorProcess {
 public:
  // Starts schemagated listening on `listen` (port 0: any) and waits
  // until it serves, unless `wait_until_serving` is false.
  CoordinatorProcess(const std::string& database_url, const std::string& migrations_dir,
                     const std::vector<std::string>& extra_args = {},
                     const std::string& listen = "127.0.0.1:0", bool wait_until_serving = true);
  // host:port it listens on. For port 0 without wait_until_serving, the
  // first call waits (up to 20 s) for the "serving on" line that names the
  // port; "" (and a test failure) if it never comes. Restart a coordinator
  // on the same address by passing this as `listen` to the next one.
  const std::string& address() const;
  ChildProcess& process() { return *process_; }
  // Number of threads of the process (/proc/PID/status).
  int ThreadCount() const;

 private:
  // Waits for the "serving on host:port" line and takes the address from
  // it; false (and a test failure) if it does not come within 20 s.
  bool ReadServingAddress() const;

  std::unique_ptr<ChildProcess> process_;
  std::string listen_;
  // Resolved on demand (port 0).
  mutable std::string address_;
};

// A PostgreSQL cluster of the test's own (initdb in a temporary directory,
// a free loopback port), for tests that stop and start the server. As root,
// initdb and pg_ctl run as the postgres user.
class PrivatePostgres {
 public:
  // `extra_listen` (e.g. a NetworkNamespace's host address) is listened on
  // besides 127.0.0.1, trusting every client.
  explicit PrivatePostgres(const std::string& extra_listen = "");
  ~PrivatePostgres();
  bool ok() const { return ok_; }
  bool Start();
  // Fast shutdown: open sessions are disconnected.
  bool Stop();
  // URL of `database` on this cluster.
  std::string Url(const std::string& database = "postgres") const;

 private:
  int PgCtl(const std::vector<std::string>& args);
  std::string dir_;
  std::string listen_ = "127.0.0.1";
  int port_ = 0;
  bool ok_ = false;
};

// A network namespace joined to this one by a veth pair (host side
// host_address(), namespace side ns_address(), a /30 of 10.200.0.0/16), for
// cutting a process off the network without closing its sockets: with the
// link down, packets vanish and nobody is told, as in a partition or a
// crashed host. Needs root (ip netns); ok() is false otherwise.
class NetworkNamespace {
 public:
  NetworkNamespace();
  ~NetworkNamespace();
  bool ok() const { return ok_; }
  const std::string& host_address() const { return host_address_; }
  const std::string& ns_address() const { return ns_address_; }
  // `argv` run inside the namespace (same pid: ip netns exec execs it).
  std::vector<std::string> Inside(const std::vector<std::string>& argv) const;
  // Takes the link down (packets dropped silently) or up again.
  bool SetLinkUp(bool up);

 private:
  std::string name_, host_if_, host_address_, ns_address_;
  bool ok_ = false;
};

// PgBouncer (Debian's pgbouncer) on a loopback port the kernel picks (port
// 0, read back from its socket) in front of a PostgreSQL server, trusting
// every user, with the given pool_mode.
class PgBouncer {
 public:
  PgBouncer(const std::string& server_host, int server_port,
            const std::string& pool_mode = "transaction");
  // False if the pgbouncer binary is missing or it did not start.
  bool ok() const { return ok_; }
  int port() const { return port_; }
  std::string Log() const;

 private:
  TempDir dir_;
  int port_ = 0;
  bool ok_ = false;
  std::unique_ptr<ChildProcess> process_;
};

// A loopback port that was free a moment ago, for programs that cannot
// listen on port 0 (PostgreSQL) or an address nothing listens on. Anything
// may take it before it is used: bind port 0 and read the port back instead
// wherever the program allows (CoordinatorProcess, PgBouncer, TcpProxy).
int FreePort();

// Runs a binary to completion; returns its exit code and fills `output`.
int RunBinary(const std::vector<std::string>& argv, std::string* output,
              absl::Duration timeout = absl::Seconds(60),
              const std::map<std::string, std::string>& env = {});

}  // namespace schemagate::testing

#endif  // SCHEMAGATE_TESTS_SUPPORT_TEST_SUPPORT_H_
