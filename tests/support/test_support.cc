#include "tests/support/test_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "coordinator/base/flags.h"

namespace schemagate::testing {
namespace {

std::string RandomSuffix() {
  static std::mt19937_64 rng(std::random_device{}() ^ static_cast<uint64_t>(getpid()));
  return absl::StrFormat("%012x", rng() & 0xFFFFFFFFFFFFull);
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The port of the TCP socket process `pid` listens on (its first, from
// /proc/PID/net/tcp and its descriptors), or 0: how a test reads back the
// port of a program that listens on port 0 without saying which it got.
int ListeningPort(pid_t pid) {
  std::set<std::string> sockets;  // inodes
  std::error_code error;
  const std::string fds = absl::StrCat("/proc/", pid, "/fd");
  for (const auto& entry : std::filesystem::directory_iterator(fds, error)) {
    std::error_code link_error;
    const std::string target = std::filesystem::read_symlink(entry.path(), link_error).string();
    absl::string_view inode = target;
    if (absl::ConsumePrefix(&inode, "socket:[") && absl::ConsumeSuffix(&inode, "]")) {
      sockets.insert(std::string(inode));
    }
  }
  // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
  const std::string table = ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/net/tcp"));
  for (absl::string_view line : absl::StrSplit(table, '\n')) {
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (fields.size() < 10 || fields[3] != "0A" || !sockets.count(std::string(fields[9]))) {
      continue;  // not a listening socket of `pid`
    }
    const size_t colon = fields[1].find(':');
    int port = 0;
    if (colon != absl::string_view::npos &&
        absl::SimpleHexAtoi(fields[1].substr(colon + 1), &port)) {
      return port;
    }
  }
  return 0;
}

}  // namespace

std::string AdminUrl() { return EnvOr("SCHEMAGATE_TEST_DATABASE_URL"); }

std::string WithDatabase(const std::string& url, const std::string& database) {
  const size_t scheme = url.find("://");
  const size_t slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  if (slash == std::string::npos) return absl::StrCat(url, "/", database);
  const size_t query = url.find('?', slash);
  return absl::StrCat(url.substr(0, slash + 1), database,
                      query == std::string::npos ? "" : url.substr(query));
}

std::string WithHostPort(const std::string& conninfo, const std::string& host, int port) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
  if (options == nullptr) {
    ADD_FAILURE() << "cannot parse " << conninfo << ": " << (error ? error : "out of memory");
    PQfreemem(error);
    return conninfo;
  }
  std::string out = absl::StrCat("host=", host, " port=", port);
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    const std::string key = o->keyword;
    if (o->val == nullptr || key == "host" || key == "hostaddr" || key == "port") continue;
    std::string value;
    for (const char c : std::string(o->val)) {
      if (c == '\\' || c == '\'') value += '\\';
      value += c;
    }
    absl::StrAppend(&out, " ", key, "='", value, "'");
  }
  PQconninfoFree(options);
  return out;
}

int PortOf(const std::string& conninfo) {
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), nullptr);
  int port = 5432;
  for (PQconninfoOption* o = options; o != nullptr && o->keyword != nullptr; ++o) {
    if (std::string(o->keyword) == "port" && o->val != nullptr) (void)absl::SimpleAtoi(o->val, &port);
  }
  PQconninfoFree(options);
  return port;
}

int EnvInt(const char* name, int fallback) {
  int value = 0;
  return absl::SimpleAtoi(EnvOr(name), &value) && value > 0 ? value : fallback;
}

std::optional<std::string> TryQuery(const std::string& url, const std::string& sql) {
  try {
    pqxx::connection conn(url);
    pqxx::nontransaction tx(conn);
    pqxx::result r = tx.exec(sql);
    if (r.empty() || r[0][0].is_null()) return std::string();
    return r[0][0].as<std::string>();
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

struct QueryConnection::Session {
  explicit Session(const std::string& url) : conn(url) {}
  pqxx::connection conn;
};

QueryConnection::QueryConnection(std::string url) : url_(std::move(url)) {}
QueryConnection::~QueryConnection() = default;

std::optional<std::string> QueryConnection::Query(const std::string& sql) {
  try {
    if (session_ == nullptr || !session_->conn.is_open()) {
      session_.reset();
      session_ = std::make_unique<Session>(url_);
    }
    pqxx::nontransaction tx(session_->conn);
    pqxx::result r = tx.exec(sql);
    if (r.empty() || r[0][0].is_null()) return std::string();
    return r[0][0].as<std::string>();
  } catch (const std::exception&) {
    session_.reset();
    return std::nullopt;
  }
}

bool WaitUntil(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

TestDatabase::TestDatabase() {
  name_ = absl::StrCat("sg_test_", RandomSuffix());
  url_ = WithDatabase(AdminUrl(), name_);
  pqxx::connection admin(AdminUrl());
  pqxx::nontransaction tx(admin);
  tx.exec(absl::StrCat("CREATE DATABASE ", tx.quote_name(name_)));
}

TestDatabase::~TestDatabase() {
  try {
    pqxx::connection admin(AdminUrl());
    pqxx::nontransaction tx(admin);
    tx.exec(absl::StrCat("DROP DATABASE IF EXISTS ", tx.quote_name(name_), " WITH (FORCE)"));
  } catch (const std::exception& e) {
    ADD_FAILURE() << "dropping " << name_ << ": " << e.what();
  }
}

void TestDatabase::Exec(const std::string& sql) const {
  try {
    pqxx::connection conn(url_);
    pqxx::nontransaction tx(conn);
    tx.exec(sql);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "SQL failed: " << sql << ": " << e.what();
  }
}

std::string TestDatabase::Query(const std::string& sql) const {
  try {
    pqxx::connection conn(url_);
    pqxx::nontransaction tx(conn);
    pqxx::result r = tx.exec(sql);
    if (r.empty() || r[0][0].is_null()) return "";
    return r[0][0].as<std::string>();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "SQL failed: " << sql << ": " << e.what();
    return "";
  }
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "schemagate-test-XXXXXX").string();
  char* made = mkdtemp(pattern.data());
  if (made == nullptr) std::abort();
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::Write(const std::string& name, const std::string& content) const {
  const std::filesystem::path file = std::filesystem::path(path_) / name;
  std::filesystem::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << content;
  return file.string();
}

void TempDir::Remove(const std::string& name) const {
  std::error_code ec;
  std::filesystem::remove(std::filesystem::path(path_) / name, ec);
}

void WriteTwoReleases(const TempDir& release1, const TempDir& release2) {
  for (int v = 1; v <= 3; ++v) {
    const std::string name = absl::StrCat("000", v, "_t", v, ".up.sql");
    const std::string sql = absl::StrCat("CREATE TABLE t", v, " (id int);\n");
    release1.Write(name, sql);
    release2.Write(name, sql);
  }
  release2.Write("0004_drop_t1.up.sql", "-- schemagate:breaking\nDROP TABLE t1;\n");
}

bool IsApplied(const TestDatabase& db, int64_t version) {
  return db.Query(absl::StrCat("SELECT count(*) FROM schemagate.migrations WHERE version = ",
                               version)) == "1";
}

std::vector<AppliedMigration> AppliedUpTo(const MigrationSet& set, int64_t n) {
  std::vector<AppliedMigration> rows;
  for (const Migration& m : set.migrations()) {
    if (m.version > n) break;
    AppliedMigration row;
    row.version = m.version;
    row.name = m.name;
    row.checksum = m.checksum;
    rows.push_back(row);
  }
  return rows;
}

InstanceRecord LiveInstance(const std::string& id, int64_t known) {
  InstanceRecord i;
  i.instance_id = id;
  i.app = "api";
  i.app_version = "1.0";
  i.known_version = known;
  i.required_version = known;
  return i;
}

void WriteTrivialMigrations(const TempDir& dir, int first, int count) {
  for (int v = first; v < first + count; ++v) {
    dir.Write(absl::StrFormat("%04d_table_%d.up.sql", v, v),
              absl::StrFormat("CREATE TABLE t%d (id bigint PRIMARY KEY, note text);\n", v));
    dir.Write(absl::StrFormat("%04d_table_%d.down.sql", v, v),
              absl::StrFormat("DROP TABLE t%d;\n", v));
  }
}

std::string BinaryPath(const std::string& name) {
  return absl::StrCat(EnvOr("SCHEMAGATE_BIN_DIR", SCHEMAGATE_DEFAULT_BIN_DIR), "/", name);
}

std::string SourcePath(const std::string& relative) {
  return absl::StrCat(SCHEMAGATE_SOURCE_DIR, "/", relative);
}

ChildProcess::ChildProcess(const std::vector<std::string>& argv,
                           const std::map<std::string, std::string>& env) {
  log_path_ = (std::filesystem::temp_directory_path() /
               absl::StrCat("schemagate-child-", RandomSuffix(), ".log"))
                  .string();
  const int log_fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    const int null_fd = open("/dev/null", O_RDONLY);
    dup2(null_fd, STDIN_FILENO);
    for (const auto& [key, value] : env) setenv(key.c_str(), value.c_str(), 1);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(log_fd);
}

ChildProcess::~ChildProcess() {
  if (running()) {
    kill(pid_, SIGKILL);
    Wait(absl::Seconds(10));
  }
  if (::testing::Test::HasFailure()) {
    std::fprintf(stderr, "---- log of pid %d (%s) ----\n%s\n", pid_, log_path_.c_str(),
                 Log().substr(0, 20000).c_str());
  }
  unlink(log_path_.c_str());
}

std::string ChildProcess::Log() const { return ReadFileOrEmpty(log_path_); }

bool ChildProcess::WaitForLog(const std::string& text, absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (Log().find(text) != std::string::npos) return true;
    if (kill(pid_, 0) != 0) return Log().find(text) != std::string::npos;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

int ChildProcess::Wait(absl::Duration timeout) {
  if (exited_) return exit_code_;
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_code_;
    }
    if (absl::Now() >= deadline) return -1;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

bool ChildProcess::running() {
  if (exited_) return false;
  return Wait(absl::ZeroDuration()) == -1;
}

void ChildProcess::Signal(int sig) {
  if (!exited_) kill(pid_, sig);
}

CoordinatorProcess::CoordinatorProcess(const std::string& database_url,
                                       const std::string& migrations_dir,
                                       const std::vector<std::string>& extra_args,
                                       const std::string& listen, bool wait_until_serving)
    : listen_(listen) {
  std::vector<std::string> argv = {BinaryPath("schemagated"), "--database-url", database_url,
                                   "--migrations-dir", migrations_dir, "--listen", listen};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  process_ = std::make_unique<ChildProcess>(argv);
  if (!wait_until_serving) {
    // A fixed port is the address at once; port 0 is read on demand.
    if (!absl::EndsWith(listen, ":0")) address_ = listen;
    return;
  }
  if (!ReadServingAddress()) return;
  // Answers before the first database read are UNAVAILABLE ("not connected
  // yet"); tests expect a coordinator that has seen its database. A test of
  // an unreachable database just waits a little longer here.
  process_->WaitForLog("database reachable", absl::Seconds(10));
}

const std::string& CoordinatorProcess::address() const {
  if (address_.empty()) ReadServingAddress();
  return address_;
}

bool CoordinatorProcess::ReadServingAddress() const {
  const std::string host = listen_.substr(0, listen_.rfind(':'));
  const std::string marker = absl::StrCat("serving on ", host, ":");
  if (!process_->WaitForLog(marker, absl::Seconds(20))) {
    ADD_FAILURE() << "schemagated did not start:\n" << process_->Log();
    return false;
  }
  const std::string log = process_->Log();
  const size_t at = log.find(marker) + marker.size();
  const size_t end = log.find_first_not_of("0123456789", at);
  address_ = absl::StrCat(host, ":", log.substr(at, end - at));
  return true;
}

int CoordinatorProcess::ThreadCount() const {
  const std::string status = ReadFileOrEmpty(absl::StrCat("/proc/", process_->pid(), "/status"));
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (absl::ConsumePrefix(&line, "Threads:")) {
      int n = 0;
      (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &n);
      return n;
    }
  }
  return -1;
}

namespace {

std::string PgBin(const std::string& tool) {
  return absl::StrCat(EnvOr("SCHEMAGATE_PG_BIN", "/usr/lib/postgresql/15/bin"), "/", tool);
}

// Runs argv as the postgres user when we are root.
std::vector<std::string> AsPostgres(std::vector<std::string> argv) {
  if (geteuid() != 0) return argv;
  argv.insert(argv.begin(), {"/usr/sbin/runuser", "-u", "postgres", "--"});
  return argv;
}

}  // namespace

PrivatePostgres::PrivatePostgres(const std::string& extra_listen) {
  if (!extra_listen.empty()) listen_ = absl::StrCat("127.0.0.1,", extra_listen);
  std::string pattern =
      (std::filesystem::temp_directory_path() / "schemagate-pg-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) return;
  dir_ = pattern;
  if (geteuid() == 0) {
    RunBinary({"/bin/chown", "postgres", dir_}, nullptr);
  }
  std::string out;
  if (RunBinary(AsPostgres({PgBin("initdb"), "-D", dir_ + "/data", "-A", "trust", "-U",
                            "postgres", "--no-sync"}),
                &out, absl::Seconds(120)) != 0) {
    ADD_FAILURE() << "initdb failed: " << out;
    return;
  }
  if (!extra_listen.empty()) {
    std::ofstream hba(dir_ + "/data/pg_hba.conf", std::ios::app);
    hba << "host all all " << extra_listen << "/32 trust\nhost all all 10.200.0.0/16 trust\n";
  }
  // PostgreSQL cannot listen on port 0, so the port is picked beforehand;
  // another process may bind it first, and then another port is tried.
  // (A restart, Start() after Stop(), keeps the port: clients hold it.)
  for (int attempt = 0; attempt < 5 && !ok_; ++attempt) {
    port_ = FreePort();
    const size_t log_before = ReadFileOrEmpty(dir_ + "/server.log").size();
    ok_ = Start();
    if (ok_) break;
    const std::string log = ReadFileOrEmpty(dir_ + "/server.log");
    if (log.find("Address already in use", std::min(log_before, log.size())) ==
        std::string::npos) {
      break;
    }
    std::fprintf(stderr, "port %d was taken before PostgreSQL bound it; trying another\n", port_);
  }
}

PrivatePostgres::~PrivatePostgres() {
  if (!dir_.empty()) {
    PgCtl({"stop", "-m", "immediate"});
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

int PrivatePostgres::PgCtl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {PgBin("pg_ctl"), "-D", dir_ + "/data", "-w", "-t", "60"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string out;
  const int code = RunBinary(AsPostgres(argv), &out, absl::Seconds(90));
  if (code != 0) std::fprintf(stderr, "pg_ctl %s: %s\n", args[0].c_str(), out.c_str());
  return code;
}

bool PrivatePostgres::Start() {
  return PgCtl({"start", "-l", dir_ + "/server.log", "-o",
                absl::StrCat("-p ", port_, " -k ", dir_,
                             " -c listen_addresses=", listen_, " -c fsync=off")}) == 0;
}

bool PrivatePostgres::Stop() { return PgCtl({"stop", "-m", "fast"}) == 0; }

std::string PrivatePostgres::Url(const std::string& database) const {
  return absl::StrCat("postgres://postgres@127.0.0.1:", port_, "/", database);
}

NetworkNamespace::NetworkNamespace() {
  if (geteuid() != 0) return;
  // A /30 per namespace, from the pid and a random byte: parallel tests differ.
  static std::mt19937 rng(std::random_device{}());
  const int block = static_cast<int>((getpid() * 7 + rng()) % 16000);
  const std::string prefix = absl::StrCat("10.200.", block / 64, ".");
  host_address_ = absl::StrCat(prefix, (block % 64) * 4 + 1);
  ns_address_ = absl::StrCat(prefix, (block % 64) * 4 + 2);
  name_ = absl::StrCat("sgchaos-", RandomSuffix().substr(0, 8));
  host_if_ = absl::StrCat("sgh", name_.substr(8));
  const std::string ns_if = absl::StrCat("sgn", name_.substr(8));
  const std::string ip = "/usr/sbin/ip";
  for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{
           {ip, "netns", "add", name_},
           {ip, "link", "add", host_if_, "type", "veth", "peer", "name", ns_if},
           {ip, "link", "set", ns_if, "netns", name_},
           {ip, "addr", "add", host_address_ + "/30", "dev", host_if_},
           {ip, "link", "set", host_if_, "up"},
           {ip, "-n", name_, "addr", "add", ns_address_ + "/30", "dev", ns_if},
           {ip, "-n", name_, "link", "set", ns_if, "up"},
           {ip, "-n", name_, "link", "set", "lo", "up"}}) {
    std::string out;
    if (RunBinary(argv, &out, absl::Seconds(20)) != 0) {
      std::fprintf(stderr, "network namespace: %s: %s\n", absl::StrJoin(argv, " ").c_str(),
                   out.c_str());
      return;
    }
  }
  ok_ = true;
}

NetworkNamespace::~NetworkNamespace() {
  if (name_.empty()) return;
  RunBinary({"/usr/sbin/ip", "link", "del", host_if_}, nullptr);
  RunBinary({"/usr/sbin/ip", "netns", "del", name_}, nullptr);
}

std::vector<std::string> NetworkNamespace::Inside(const std::vector<std::string>& argv) const {
  std::vector<std::string> out = {"/usr/sbin/ip", "netns", "exec", name_};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

bool NetworkNamespace::SetLinkUp(bool up) {
  return RunBinary({"/usr/sbin/ip", "link", "set", host_if_, up ? "up" : "down"}, nullptr) == 0;
}

PgBouncer::PgBouncer(const std::string& server_host, int server_port,
                     const std::string& pool_mode) {
  const std::string binary = EnvOr("SCHEMAGATE_PGBOUNCER", "/usr/sbin/pgbouncer");
  if (access(binary.c_str(), X_OK) != 0) return;
  dir_.Write("users.txt", "\"postgres\" \"\"\n");
  // listen_port 0: the kernel picks the port, read back from the process's
  // listening socket (PgBouncer logs "listening on 127.0.0.1:0").
  const std::string ini = dir_.Write(
      "pgbouncer.ini",
      absl::StrCat("[databases]\n* = host=", server_host, " port=", server_port,
                   "\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = 0",
                   "\nunix_socket_dir = ", dir_.path(), "\nauth_type = trust\nauth_file = ",
                   dir_.path(), "/users.txt\npool_mode = ", pool_mode,
                   "\ndefault_pool_size = 4\nmax_client_conn = 100\n"
                   "ignore_startup_parameters = extra_float_digits\n"));
  std::vector<std::string> argv = {binary};
  if (geteuid() == 0) {
    // PgBouncer refuses to run as root; -u switches user after reading the ini.
    RunBinary({"/bin/chown", "-R", "postgres", dir_.path()}, nullptr);
    argv.insert(argv.end(), {"-u", "postgres"});
  }
  argv.push_back(ini);
  process_ = std::make_unique<ChildProcess>(argv);
  // "process up" comes after the listening socket is bound.
  ok_ = process_->WaitForLog("process up", absl::Seconds(20));
  if (ok_) {
    port_ = ListeningPort(process_->pid());
    ok_ = port_ != 0;
  }
  if (!ok_) ADD_FAILURE() << "pgbouncer did not start:\n" << process_->Log();
}

std::string PgBouncer::Log() const { return process_ ? process_->Log() : ""; }

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

int RunBinary(const std::vector<std::string>& argv, std::string* output, absl::Duration timeout,
              const std::map<std::string, std::string>& env) {
  ChildProcess child(argv, env);
  const int code = child.Wait(timeout);
  if (output != nullptr) *output = child.Log();
  return code;
}

}  // namespace schemagate::testing
