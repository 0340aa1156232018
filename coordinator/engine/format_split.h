// Shared by the single-file formats' readers (format_goose.cc,
// format_dbmate.cc); not for other callers.
#ifndef SCHEMAGATE_COORDINATOR_ENGINE_FORMAT_SPLIT_H_
#define SCHEMAGATE_COORDINATOR_ENGINE_FORMAT_SPLIT_H_

#include <string>

#include "coordinator/engine/set_format.h"

namespace schemagate {

// A single-file migration cut where its down section starts: the up is
// `content` up to line `down_line`, the down the rest (no down when
// `down_line` is 0). The caller sets the markers' flags.
MigrationSource SplitAtDownLine(const std::string& file, const std::string& content, int down_line);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_ENGINE_FORMAT_SPLIT_H_
