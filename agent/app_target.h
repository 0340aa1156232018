// What an app needs from the schema, taken from its own migration files or
// from flags (DESIGN.md "Fleet rules").
#ifndef SCHEMAGATE_AGENT_APP_TARGET_H_
#define SCHEMAGATE_AGENT_APP_TARGET_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "coordinator/engine/readiness_answer.h"

namespace schemagate {

struct AppTargetFlags {
  std::string app;
  std::string app_version;
  // The app's own migrations directory; empty if not given.
  std::string migrations_dir;
  // Its format: auto, golang-migrate, goose, dbmate or flyway.
  std::string format = "auto";
  int64_t known = 0;
  int64_t required = 0;
};

// K = the highest version in the app's directory, R = its highest
// non-breaking version, plus every up file's checksum. With --known /
// --required instead, those values. With neither, K = R = 0 (the
// coordinator's own set decides). INVALID_ARGUMENT on bad combinations or
// an unreadable directory.
absl::StatusOr<AppTarget> BuildAppTarget(const AppTargetFlags& flags);

}  // namespace schemagate

#endif  // SCHEMAGATE_AGENT_APP_TARGET_H_
