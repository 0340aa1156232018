#include "agent/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace schemagate {
namespace {

constexpr int kForwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

sigset_t HandledSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : kForwarded) sigaddset(&set, sig);
  sigaddset(&set, SIGCHLD);
  return set;
}

bool IsStopSignal(int sig) {
  return sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT;
}

int ExitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

std::vector<char*> ArgvPointers(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  out.reserve(argv.size() + 1);
  for (const std::string& arg : argv) out.push_back(const_cast<char*>(arg.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

void ProcessSupervisor::BlockSignals() {
  sigset_t set = HandledSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

ProcessSupervisor::ProcessSupervisor(std::function<void(int)> on_stop_signal)
    : on_stop_signal_(std::move(on_stop_signal)) {
  thread_ = std::thread([this] { SignalLoop(); });
}

ProcessSupervisor::~ProcessSupervisor() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

void ProcessSupervisor::Reap() {
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    absl::MutexLock lock(&mu_);
    reaped_[pid] = status;
  }
}

void ProcessSupervisor::SignalLoop() {
  const sigset_t set = HandledSignals();
  const struct timespec tick = {0, 100 * 1000 * 1000};
  while (!stopping_) {
    siginfo_t info;
    const int sig = sigtimedwait(&set, &info, &tick);
    if (sig < 0) continue;  // EAGAIN (tick) or EINTR.
    if (sig == SIGCHLD) {
      Reap();
      continue;
    }
    pid_t child;
    {
      absl::MutexLock lock(&mu_);
      child = child_;
    }
    if (child > 0) {
      // Signals from the terminal already reached the whole foreground
      // process group, the app included: do not send them twice.
      if (info.si_code == SI_KERNEL && (sig == SIGINT || sig == SIGQUIT || sig == SIGWINCH)) {
        continue;
      }
      kill(child, sig);
    } else if (IsStopSignal(sig)) {
      int expected = 0;
      stop_signal_.compare_exchange_strong(expected, sig);
      if (on_stop_signal_) on_stop_signal_(sig);
    }
  }
}

int ProcessSupervisor::Run(const std::vector<std::string>& argv) {
  if (argv.empty()) return 127;
  std::vector<char*> args = ArgvPointers(argv);
  // An error pipe tells the parent whether exec succeeded (closed on exec).
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    std::fprintf(stderr, "schemagate-agent: pipe: %s\n", std::strerror(errno));
    return 127;
  }
  const pid_t pid = fork();
  if (pid < 0) {
    std::fprintf(stderr, "schemagate-agent: fork: %s\n", std::strerror(errno));
    return 127;
  }
  if (pid == 0) {
    close(pipe_fds[0]);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execvp(args[0], args.data());
    const int err = errno;
    (void)!write(pipe_fds[1], &err, sizeof(err));
    _exit(127);
  }
  close(pipe_fds[1]);
  {
    absl::MutexLock lock(&mu_);
    child_ = pid;
    if (terminate_signal_ != 0) kill(pid, terminate_signal_);
  }
  int exec_errno = 0;
  ssize_t n;
  do {
    n = read(pipe_fds[0], &exec_errno, sizeof(exec_errno));
  } while (n < 0 && errno == EINTR);
  close(pipe_fds[0]);
  absl::MutexLock lock(&mu_);
  if (n == sizeof(exec_errno)) {
    std::fprintf(stderr, "schemagate-agent: cannot start %s: %s\n", argv[0].c_str(),
                 std::strerror(exec_errno));
  }
  // Wait for the reaper to see our child exit.
  mu_.Await(absl::Condition(
      +[](ProcessSupervisor* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
        return s->reaped_.contains(s->child_);
      },
      this));
  const int status = reaped_[pid];
  reaped_.erase(pid);
  child_ = 0;
  if (n == sizeof(exec_errno)) return 127;
  return ExitCodeOf(status);
}

void ProcessSupervisor::Terminate(int sig) {
  absl::MutexLock lock(&mu_);
  terminate_signal_ = sig;
  if (child_ > 0) kill(child_, sig);
}

int ProcessSupervisor::Exec(const std::vector<std::string>& argv) {
  if (argv.empty()) return 127;
  std::vector<char*> args = ArgvPointers(argv);
  sigset_t none;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, nullptr);
  execvp(args[0], args.data());
  std::fprintf(stderr, "schemagate-agent: cannot exec %s: %s\n", argv[0].c_str(),
               std::strerror(errno));
  return 127;
}

}  // namespace schemagate
