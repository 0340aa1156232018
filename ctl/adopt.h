// schemagatectl adopt: offline adoption of a database another migration
// tool migrated (docs/coming-from-*.md), on its own connection and under the
// run lock, as schemagated --adopt does it.
#ifndef SCHEMAGATE_CTL_ADOPT_H_
#define SCHEMAGATE_CTL_ADOPT_H_

#include <string>

namespace schemagate {

struct AdoptCommand {
  std::string database_url;
  std::string migrations_dir = "migrations";
  std::string format = "auto";
  std::string from;
  std::string schema = "schemagate";
  std::string actor;
  bool skip_missing = false;
  bool dry_run = false;
  bool json = false;
};

// Prints what was (or, with dry_run, would be) adopted; returns the exit code.
int RunAdopt(const AdoptCommand& command);

}  // namespace schemagate

#endif  // SCHEMAGATE_CTL_ADOPT_H_
