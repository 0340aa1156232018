#include "agent/app_target.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/engine/migration_set.h"

namespace schemagate {

absl::StatusOr<AppTarget> BuildAppTarget(const AppTargetFlags& flags) {
  AppTarget target;
  target.app = flags.app;
  target.app_version = flags.app_version;
  if (flags.known < 0 || flags.required < 0) {
    return absl::InvalidArgumentError("--known and --required must be positive versions");
  }
  if (!flags.migrations_dir.empty()) {
    if (flags.known != 0 || flags.required != 0) {
      return absl::InvalidArgumentError(
          "give either --migrations-dir or --known/--required, not both");
    }
    absl::StatusOr<SetFormat> format = ParseSetFormat(flags.format);
    if (!format.ok()) return format.status();
    std::vector<std::string> warnings;
    absl::StatusOr<MigrationSet> set = MigrationSet::LoadDirectoryWith(
        flags.migrations_dir, /*split=*/nullptr, &warnings, *format);
    if (!set.ok()) return set.status();
    if (set->migrations().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(flags.migrations_dir,
                       " holds no migrations; point --migrations-dir at the app's "
                       "VERSION_name.up.sql files (or its goose, dbmate or Flyway files)"));
    }
    target.known_version = set->Head();
    target.required_version = set->HighestNonBreaking();
    if (target.required_version == 0) target.required_version = target.known_version;
    for (const Migration& m : set->migrations()) target.checksums[m.version] = m.checksum;
    for (const Repeatable& r : set->repeatables()) target.repeatable_checksums[r.name] = r.checksum;
    return target;
  }
  if (flags.required != 0 && flags.known != 0 && flags.required > flags.known) {
    return absl::InvalidArgumentError(absl::StrCat("--required ", flags.required,
                                                   " is above --known ", flags.known,
                                                   "; the app cannot need what it does not know"));
  }
  target.known_version = flags.known;
  target.required_version = flags.required;
  return target;
}

}  // namespace schemagate
