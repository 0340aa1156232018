// schemagated: the migration coordinator daemon. The flags and the wiring
// are coordinator/daemon/; the layers below it do the work.
#include <string>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "coordinator/base/flags.h"
#include "coordinator/daemon/daemon.h"

int main(int argc, char** argv) {
  using namespace schemagate;
  // Debian builds abseil without NDEBUG, so every absl::Mutex (gRPC's own
  // locks included) would feed the deadlock-detection graph under a global
  // lock (GraphCycles::GetId was the coordinator's largest named symbol in
  // a perf profile of fan-out to 10,000 Wait streams; docs/benchmarks.md).
  // The thread-safety annotations and the tests cover lock order instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  CLI::App app{kDaemonHelp, "schemagated"};
  DaemonFlags flags;
  AddDaemonFlags(&app, &flags);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kDaemonExitOk : kDaemonExitUsage;
  }
  // SCHEMAGATE_PARSE_ONLY=1: check the command line and stop (used by the
  // test that every command line under deploy/ is accepted).
  if (EnvOr("SCHEMAGATE_PARSE_ONLY") == "1") return kDaemonExitOk;
  return RunDaemon(std::move(flags));
}
