// schemagatectl import-alembic: writes one SQL migration pair per revision
// of an Alembic project, in revision order, through Alembic's own offline
// mode (`alembic upgrade A:B --sql`), so that `adopt --from alembic` can map
// the database's alembic_version onto the files (docs/coming-from-alembic.md).
#ifndef SCHEMAGATE_CTL_IMPORT_ALEMBIC_H_
#define SCHEMAGATE_CTL_IMPORT_ALEMBIC_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace schemagate {

struct ImportAlembicCommand {
  std::string config = "alembic.ini";
  std::string out;
  // The interpreter that imports alembic; empty: $SCHEMAGATE_PYTHON, then
  // python3 on PATH, then /usr/bin/python3 (Debian's python3-alembic).
  std::string python;
  std::string version_table = "alembic_version";
  bool dry_run = false;
};

// One revision as Alembic's offline mode renders it.
struct AlembicRevision {
  std::string revision;
  std::string down_revision;  // "" for the first
  std::string path;           // the revision's .py file
  std::string message;        // its docstring's first line
  std::string up_sql;         // `upgrade down:rev --sql`, as Alembic printed it
  std::string down_sql;       // `downgrade rev:down --sql`
  std::string down_error;     // why the downgrade could not be rendered; "" if it was
};

// Parses the helper's output (fields "KEY LENGTH\n" + LENGTH bytes + "\n").
absl::StatusOr<std::vector<AlembicRevision>> ParseAlembicHelperOutput(absl::string_view text);

// The statements of one rendered script that schemagate runs: Alembic's
// BEGIN/COMMIT and its statements on `version_table` left out, the rest
// joined as "statement;\n\n". Sets *no_transaction when one of them cannot
// run in a transaction (Alembic's autocommit_block, CREATE INDEX
// CONCURRENTLY).
absl::StatusOr<std::string> MigrationSqlFromAlembic(absl::string_view rendered,
                                                    absl::string_view version_table,
                                                    bool* no_transaction);

// The file name part for a revision: its message in lower case, words joined
// by '_', at most 48 characters; the revision id when the message is empty.
std::string AlembicSlug(const AlembicRevision& revision);

// Runs the command; returns the exit code (0, or 2 with the reason printed).
int RunImportAlembic(const ImportAlembicCommand& command);

}  // namespace schemagate

#endif  // SCHEMAGATE_CTL_IMPORT_ALEMBIC_H_
