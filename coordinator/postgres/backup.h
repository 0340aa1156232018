// Backups before runs that change the schema (--backup-dir with pg_dump in
// custom format, or the user's own --backup-command). A failed backup stops
// the run before anything changes.
#ifndef SCHEMAGATE_COORDINATOR_POSTGRES_BACKUP_H_
#define SCHEMAGATE_COORDINATOR_POSTGRES_BACKUP_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace schemagate {

struct BackupOptions {
  // Write `pg_dump -Fc` files here (created if missing). Empty: off.
  std::string directory;
  // Instead of pg_dump: run this through /bin/sh -c with SCHEMAGATE_BACKUP_PATH
  // (the file it should write, under `directory` or the temp dir),
  // SCHEMAGATE_DATABASE_URL and SCHEMAGATE_RUN_ID in its environment.
  std::string command;
  std::string database_url;
  std::string pg_dump = "pg_dump";
};

struct BackupResult {
  std::string path;
  int64_t bytes = 0;
  absl::Duration duration;
};

// Runs one backup for run `run_id`. FAILED_PRECONDITION (with the tool's
// output, credentials redacted) if the tool fails or writes nothing.
absl::StatusOr<BackupResult> RunBackup(const BackupOptions& options, const std::string& run_id);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_POSTGRES_BACKUP_H_
