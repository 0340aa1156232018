// Adopting a database another tool migrated (docs/coming-from-*.md): which
// versions of the set its bookkeeping says are applied (or dirty), which of
// its versions the set lacks, what stays pending. PlanAdoption is pure; the
// runner (Runner::Adopt) writes the plan under the run lock.
#ifndef SCHEMAGATE_COORDINATOR_ENGINE_ADOPT_H_
#define SCHEMAGATE_COORDINATOR_ENGINE_ADOPT_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/engine/foreign_bookkeeping.h"
#include "coordinator/engine/migration_set.h"

namespace schemagate {

struct AdoptOptions {
  // Adopt the versions the set has although the database records others
  // the set lacks (those are then left out, and named in history).
  bool skip_missing = false;
  // The Alembic revision of a migration (AlembicRevisionInHeader of its up
  // file); unset or "": none. Only `--from alembic` needs it.
  std::function<std::string(const Migration&)> alembic_revision;
};

struct AdoptStep {
  const Migration* migration = nullptr;
  // Recorded dirty: the other tool left it unfinished.
  bool dirty = false;
  // The version as the other tool wrote it, and where.
  std::string foreign_version;
  std::string detail;
};

struct AdoptPlan {
  ForeignBookkeeping source;
  // In version order.
  std::vector<AdoptStep> steps;
  // Versions the database records that the set has no file for.
  std::vector<std::string> missing;
  // Versions of the set the database does not record: schemagate runs them
  // after the adoption (those below the adopted head count as out of order).
  std::vector<int64_t> pending;
  // Why nothing can be adopted; empty when the plan can be written.
  std::vector<std::string> problems;

  bool ok() const { return problems.empty(); }
  int dirty_count() const;
  // "adopted 12 version(s) from public.goose_db_version (goose), 1 dirty"
  std::string Summary() const;
  // Every line of the report: the summary, each step, missing, pending, notes.
  std::vector<std::string> Lines() const;
};

// The version of the set that `version` (in `tool`'s words) is; nullopt when
// the set has no such migration.
std::optional<int64_t> SetVersionOf(const MigrationSet& set, ForeignTool tool,
                                    const std::string& version, const AdoptOptions& options);

AdoptPlan PlanAdoption(const MigrationSet& set, const ForeignBookkeeping& found,
                       const AdoptOptions& options);

// Which of the foreign tables found to adopt: the one of `from` (NOT_FOUND
// naming what was found when it is absent), or the only one found
// (NOT_FOUND when there is none; INVALID_ARGUMENT naming them when there
// are several: pass --from).
absl::StatusOr<ForeignBookkeeping> ChooseForeign(const std::vector<ForeignBookkeeping>& found,
                                                 std::optional<ForeignTool> from);

// What status and the unadopted-schema refusal say about foreign tables:
// "found public.goose_db_version (goose): 12 version(s) recorded ...;
// 'schemagatectl adopt' (or schemagated --adopt) would record 12 applied";
// "" when `found` is empty.
std::string DescribeAdoption(const MigrationSet& set, const std::vector<ForeignBookkeeping>& found,
                             const AdoptOptions& options = {});

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_ENGINE_ADOPT_H_
