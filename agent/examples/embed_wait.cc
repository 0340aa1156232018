// Embedding schemagate's wait in a C++ application, instead of wrapping the
// app with `schemagate-agent wait -- app`.
//
//   embed_wait COORDINATORS [MIGRATIONS_DIR]
//
// Waits until the schema fits this app (its own migrations directory, or
// the coordinator's set), keeps the instance registered with the fleet
// while it "serves", then leaves the fleet cleanly. Exits with the agent's
// exit codes (0 ready, 3 timed out, 4 incompatible, 5 failed, 7 unreachable).
#include <unistd.h>

#include <cstdio>
#include <string>

#include "agent/app_target.h"
#include "agent/attach_session.h"
#include "agent/channel.h"
#include "agent/wait_client.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s host:port[,host:port] [migrations-dir]\n", argv[0]);
    return 2;
  }
  schemagate::AppTargetFlags flags;
  flags.app = "embed-example";
  flags.app_version = "1.0.0";
  if (argc > 2) flags.migrations_dir = argv[2];
  absl::StatusOr<schemagate::AppTarget> target = schemagate::BuildAppTarget(flags);
  if (!target.ok()) {
    std::fprintf(stderr, "%s\n", std::string(target.status().message()).c_str());
    return 2;
  }

  schemagate::WaitOptions options;
  options.coordinators = schemagate::SplitCoordinators(argv[1]);
  options.target = *target;
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  options.instance_id = std::string(host) + "-embed-" + std::to_string(getpid());
  options.timeout = absl::Minutes(2);
  options.log = [](const std::string& line) { std::fprintf(stderr, "schemagate: %s\n", line.c_str()); };

  schemagate::ReadinessClient client;
  schemagate::WaitOutcome outcome = client.Wait(options);
  if (outcome.exit_code != 0) {
    std::fprintf(stderr, "not starting: %s\n", outcome.message.c_str());
    return outcome.exit_code;
  }

  // The schema fits: start serving, and count as a live instance meanwhile.
  schemagate::AttachSession attach(options);
  attach.Start();
  std::printf("serving with schema version %lld\n",
              static_cast<long long>(outcome.last.applied_version));
  std::fflush(stdout);
  sleep(1);  // A real application would serve requests here.
  attach.Stop();
  return 0;
}
