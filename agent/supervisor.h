// Runs the application as a supervising parent: forwards SIGTERM, SIGINT,
// SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH to it, reaps every child
// (the agent may be PID 1 in a container), and returns the app's exit code.
//
// One thread takes every handled signal with sigtimedwait for the whole
// life of the process, so the handled signals must be blocked before any
// other thread starts (BlockSignals).
#ifndef SCHEMAGATE_AGENT_SUPERVISOR_H_
#define SCHEMAGATE_AGENT_SUPERVISOR_H_

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace schemagate {

class ProcessSupervisor {
 public:
  // Blocks the handled signals in the calling thread (and so in every
  // thread created after). Call first thing in main.
  static void BlockSignals();

  // Starts the signal thread. Before Run(), a termination signal calls
  // `on_stop_signal` (e.g. to cancel a wait) and is remembered.
  explicit ProcessSupervisor(std::function<void(int signal)> on_stop_signal);
  ~ProcessSupervisor();

  ProcessSupervisor(const ProcessSupervisor&) = delete;
  ProcessSupervisor& operator=(const ProcessSupervisor&) = delete;

  // The termination signal received before Run(), or 0.
  int stop_signal() const { return stop_signal_.load(); }

  // Starts argv[0] (searched in PATH) with the agent's environment and
  // waits for it. Returns its exit code, 128+N if signal N killed it, or
  // 127 if it could not be started (the reason is written to stderr).
  int Run(const std::vector<std::string>& argv);

  // Sends `sig` to the app Run() started, or, if it has not started yet,
  // as soon as it has. Thread-safe. (The agent stops its app this way when
  // its instance id is refused.)
  void Terminate(int sig);

  // Replaces the agent with argv (execvp, signal mask restored). Returns
  // only on failure, with 127.
  static int Exec(const std::vector<std::string>& argv);

 private:
  void SignalLoop();
  void Reap();

  std::function<void(int)> on_stop_signal_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> stop_signal_{0};
  std::thread thread_;

  absl::Mutex mu_;
  pid_t child_ ABSL_GUARDED_BY(mu_) = 0;
  // Terminate()'s signal, for a child not started yet (0: none).
  int terminate_signal_ ABSL_GUARDED_BY(mu_) = 0;
  // Exit statuses of reaped children not yet claimed, by pid.
  absl::flat_hash_map<pid_t, int> reaped_ ABSL_GUARDED_BY(mu_);
};

}  // namespace schemagate

#endif  // SCHEMAGATE_AGENT_SUPERVISOR_H_
