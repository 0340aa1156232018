#include "coordinator/postgres/backup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/base/conninfo.h"

namespace schemagate {
namespace {

// Runs argv with extra environment, output to `log_path`; returns the exit code.
int Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
          const std::string& log_path) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    for (const std::string& e : env) putenv(const_cast<char*>(e.c_str()));
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

absl::StatusOr<BackupResult> RunBackup(const BackupOptions& options, const std::string& run_id) {
  const absl::Time start = absl::Now();
  std::string directory = options.directory;
  if (directory.empty()) directory = std::filesystem::temp_directory_path().string();
  std::error_code ec;
  std::filesystem::create_directories(directory, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("backup: cannot create ", directory, ": ", ec.message()));
  }
  BackupResult result;
  result.path = absl::StrCat(directory, "/schemagate-",
                             absl::FormatTime("%Y%m%dT%H%M%SZ", start, absl::UTCTimeZone()), "-",
                             run_id, ".dump");
  const std::string log_path = result.path + ".log";
  std::vector<std::string> env = {absl::StrCat("SCHEMAGATE_BACKUP_PATH=", result.path),
                                  absl::StrCat("SCHEMAGATE_RUN_ID=", run_id),
                                  absl::StrCat("SCHEMAGATE_DATABASE_URL=", options.database_url)};
  const int code =
      options.command.empty()
          ? Spawn({options.pg_dump, "--format=custom", "--file", result.path, "--dbname",
                   options.database_url},
                  env, log_path)
          : Spawn({"/bin/sh", "-c", options.command}, env, log_path);
  std::ifstream log(log_path);
  std::stringstream output;
  output << log.rdbuf();
  std::filesystem::remove(log_path, ec);
  struct stat st;
  if (code != 0 || stat(result.path.c_str(), &st) != 0 || st.st_size == 0) {
    std::string text = RedactSecrets(output.str());
    if (text.size() > 2000) text = text.substr(0, 2000) + "…";
    return absl::FailedPreconditionError(absl::StrCat(
        "backup failed (", options.command.empty() ? "pg_dump" : "--backup-command",
        code == 0 ? " wrote no file" : absl::StrCat(" exited ", code), "); the run did not start",
        text.empty() ? "" : ": ", text));
  }
  result.bytes = st.st_size;
  result.duration = absl::Now() - start;
  return result;
}

}  // namespace schemagate
