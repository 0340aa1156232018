// The fleet file (`schemagated --databases FILE`, DESIGN.md "Many
// databases"): which databases one coordinator fleet rolls the set out to,
// found by a static list and/or a discovery query, and the waves of a
// rollout. Parsed with yaml-cpp; every mistake is refused with
// "FILE:LINE:COLUMN: what is wrong; what to write instead". Pure: the
// environment is passed in, nothing connects to a database.
#ifndef SCHEMAGATE_COORDINATOR_ENGINE_FLEET_FILE_H_
#define SCHEMAGATE_COORDINATOR_ENGINE_FLEET_FILE_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace schemagate {

using Labels = std::map<std::string, std::string>;

// One database: a PostgreSQL database, or one schema of it (schema-per-tenant).
struct DatabaseSpec {
  std::string name;     // unique, [a-z0-9_.-]+
  std::string url;      // as resolved (from `url`, or the variable `url_env` names)
  std::string url_env;  // the variable, as written ("" when `url` was given)
  std::string schema;   // "" for the whole database
  Labels labels;
  int line = 0;  // 1-based line of the entry in the file (0: discovered)
};

struct DiscoverSpec {
  std::string url;  // the control database, resolved
  std::string url_env;
  std::string query;
  absl::Duration every = absl::Seconds(30);
  int line = 0;
};

struct WaveSpec {
  std::string name;
  Labels match;  // empty: every database no earlier wave matched
  int parallel = 1;
  absl::Duration soak = absl::ZeroDuration();
  int line = 0;
};

enum class OnFailure { kHalt, kContinue };

struct FleetSpec {
  std::string path;
  std::vector<DatabaseSpec> databases;
  std::optional<DiscoverSpec> discover;
  // As written; when the file has none, one wave "all" (parallel 1).
  std::vector<WaveSpec> waves;
  OnFailure on_failure = OnFailure::kHalt;
};

// Looks up an environment variable; nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
// The process environment (getenv; an empty value counts as unset).
std::optional<std::string> ProcessEnv(const std::string& name);

// Parses `text` (the contents of `path`, named in errors). INVALID_ARGUMENT
// with "path:line:column: …" for YAML syntax, unknown or repeated keys
// (with the likely intended one), missing or mistyped values, names, a
// password written in the file, an unset `url_env` variable, bad durations
// and waves, duplicate names.
absl::StatusOr<FleetSpec> ParseFleetText(absl::string_view text, const std::string& path,
                                         const EnvLookup& env);
// Reads and parses `path`; INVALID_ARGUMENT when it cannot be read.
absl::StatusOr<FleetSpec> ParseFleetFile(const std::string& path, const EnvLookup& env);

// The index in spec.waves of the wave of each of `databases`: the first
// wave whose every match label the database has with that value; a database
// no wave matches goes in the last wave.
std::vector<int> AssignWaves(const FleetSpec& spec, const std::vector<DatabaseSpec>& databases);

// Whether `name` is a valid database name ([a-z0-9_.-]+, at most 63 bytes).
bool IsValidDatabaseName(absl::string_view name);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_ENGINE_FLEET_FILE_H_
