// Text checks every reader of a migration file needs, with or without the
// SQL parser.
#ifndef SCHEMAGATE_COORDINATOR_BASE_TEXT_H_
#define SCHEMAGATE_COORDINATOR_BASE_TEXT_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace schemagate {

// Byte offset of the first invalid UTF-8 sequence in `s` (overlong forms and
// surrogates included), or absl::string_view::npos if there is none.
size_t FindInvalidUtf8(absl::string_view s);

// 1-based line number of byte `offset` in `text`.
int LineOfOffset(absl::string_view text, size_t offset);

// Levenshtein distance of two short words (for "did you mean").
size_t EditDistance(absl::string_view a, absl::string_view b);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_BASE_TEXT_H_
