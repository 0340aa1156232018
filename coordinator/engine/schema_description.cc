#include "coordinator/engine/schema_description.h"

#include <algorithm>
#include <iterator>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "coordinator/base/sha256.h"

namespace schemagate {
namespace {

// The object a line describes: the text before its first ": ".
absl::string_view KeyOf(const std::string& line) {
  const size_t end = line.find(": ");
  return absl::string_view(line).substr(0, end == std::string::npos ? line.size() : end);
}

// Description order: by key, then bytewise. So "table public.t: unlogged"
// comes before "table public.t column a: integer" (bytewise, ':' sorts after
// ' ') and every table heads its parts.
bool LineLess(const std::string& a, const std::string& b) {
  const absl::string_view key_a = KeyOf(a);
  const absl::string_view key_b = KeyOf(b);
  if (key_a != key_b) return key_a < key_b;
  return a < b;
}

// For display only: `line` cut to about `width` bytes. When `other` is the
// same object's line on the other side, the cut keeps the first place where
// the two differ in view (a long function body changed near its end).
std::string Clip(const std::string& line, const std::string* other, size_t width) {
  if (width == 0 || line.size() <= width) return line;
  size_t at = 0;
  if (other != nullptr) {
    at = static_cast<size_t>(
        std::mismatch(line.begin(), line.end(), other->begin(), other->end()).first -
        line.begin());
  }
  const size_t key_end = line.find(": ");
  if (at + 40 <= width || key_end == std::string::npos || at < key_end + 2 + 80) {
    return absl::StrCat(line.substr(0, width), "...");
  }
  const size_t from = at - 40;
  const size_t room = width > key_end + 2 ? width - key_end - 2 : 40;
  return absl::StrCat(line.substr(0, key_end + 2), "...", line.substr(from, room),
                      from + room < line.size() ? "..." : "");
}

}  // namespace

SchemaDescription MakeSchemaDescription(std::vector<std::string> lines) {
  SchemaDescription description;
  std::sort(lines.begin(), lines.end(), LineLess);
  description.text = absl::StrCat(kSchemaDescriptionHeader, "\n");
  for (const std::string& line : lines) absl::StrAppend(&description.text, line, "\n");
  description.fingerprint = Sha256Hex(description.text);
  description.lines = std::move(lines);
  return description;
}

SchemaDescription ParseSchemaDescription(absl::string_view text) {
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (line == kSchemaDescriptionHeader) continue;
    lines.emplace_back(line);
  }
  return MakeSchemaDescription(std::move(lines));
}

SchemaDiff DiffSchemas(const SchemaDescription& expected, const SchemaDescription& actual) {
  SchemaDiff diff;
  std::set_difference(expected.lines.begin(), expected.lines.end(), actual.lines.begin(),
                      actual.lines.end(), std::back_inserter(diff.removed), LineLess);
  std::set_difference(actual.lines.begin(), actual.lines.end(), expected.lines.begin(),
                      expected.lines.end(), std::back_inserter(diff.added), LineLess);
  return diff;
}

namespace {

// Reads one identifier as format('%I') / quote_ident wrote it from the front
// of `text`: "a""b" -> a"b, plain ones up to the next '.', ' ' or the end.
bool ConsumeIdentifier(absl::string_view* text, std::string* out) {
  out->clear();
  if (text->empty()) return false;
  if (text->front() != '"') {
    const size_t end = text->find_first_of(". ");
    *out = std::string(text->substr(0, end));
    text->remove_prefix(end == absl::string_view::npos ? text->size() : end);
    return !out->empty();
  }
  for (size_t i = 1; i < text->size(); ++i) {
    if ((*text)[i] != '"') {
      out->push_back((*text)[i]);
    } else if (i + 1 < text->size() && (*text)[i + 1] == '"') {
      out->push_back('"');
      ++i;
    } else {
      text->remove_prefix(i + 1);
      return true;
    }
  }
  return false;
}

// An index line's key, "table public.items index items_id_idx" (or on a
// "materialized view"), taken apart; false for any other key.
struct IndexKey {
  std::string schema, relation, index;
};
bool ParseIndexKey(absl::string_view key, IndexKey* out) {
  if (!absl::ConsumePrefix(&key, "table ") && !absl::ConsumePrefix(&key, "materialized view ")) {
    return false;
  }
  return ConsumeIdentifier(&key, &out->schema) && absl::ConsumePrefix(&key, ".") &&
         ConsumeIdentifier(&key, &out->relation) && absl::ConsumePrefix(&key, " index ") &&
         ConsumeIdentifier(&key, &out->index) && key.empty();
}

bool Explains(const IndexStatement& s, IndexStatement::Kind kind, const IndexKey& key) {
  return s.kind == kind && s.index == key.index && (s.schema.empty() || s.schema == key.schema) &&
         (kind != IndexStatement::Kind::kCreate || s.table == key.relation);
}

// Moves the lines of `lines` some statement of `kind` explains into `taken`.
void TakeLines(std::vector<std::string>* lines, const std::vector<IndexStatement>& statements,
               IndexStatement::Kind kind, std::vector<std::string>* taken) {
  std::vector<std::string> kept;
  for (std::string& line : *lines) {
    IndexKey key;
    const bool explained =
        ParseIndexKey(KeyOf(line), &key) &&
        std::any_of(statements.begin(), statements.end(),
                    [&](const IndexStatement& s) { return Explains(s, kind, key); });
    (explained ? taken : &kept)->push_back(std::move(line));
  }
  *lines = std::move(kept);
}

}  // namespace

SchemaDiff TakeIndexChanges(SchemaDiff* diff, const std::vector<IndexStatement>& statements) {
  SchemaDiff taken;
  TakeLines(&diff->added, statements, IndexStatement::Kind::kCreate, &taken.added);
  TakeLines(&diff->removed, statements, IndexStatement::Kind::kDrop, &taken.removed);
  return taken;
}

std::string DescribeDrift(const SchemaDiff& diff, const std::string& recorded_run_id) {
  std::string out = absl::StrCat(
      "the live schema differs from the one recorded after run ",
      recorded_run_id.empty() ? "(unknown)" : recorded_run_id, ": ", diff.removed.size(),
      " line(s) gone or changed, ", diff.added.size(),
      " new or changed (made outside schemagate?)");
  const std::string* first = !diff.removed.empty() ? &diff.removed.front()
                             : !diff.added.empty() ? &diff.added.front()
                                                   : nullptr;
  if (first != nullptr) absl::StrAppend(&out, "; first: ", KeyOf(*first));
  return out;
}

std::string FormatSchemaDiff(const SchemaDiff& diff, const std::string& expected_label,
                             const std::string& actual_label, size_t max_lines,
                             size_t max_width) {
  std::string out = absl::StrCat("--- ", expected_label, "\n+++ ", actual_label, "\n");
  size_t r = 0, a = 0, shown = 0;
  const size_t total = diff.removed.size() + diff.added.size();
  while ((r < diff.removed.size() || a < diff.added.size()) && shown < max_lines) {
    // By object key, the old line of a changed object before its new one.
    bool take_removed = a == diff.added.size();
    if (!take_removed && r < diff.removed.size()) {
      take_removed = KeyOf(diff.removed[r]) <= KeyOf(diff.added[a]);
    }
    const std::string& line = take_removed ? diff.removed[r] : diff.added[a];
    // The same object on the other side, if it changed rather than came or went.
    const std::string* other = nullptr;
    if (take_removed && a < diff.added.size() && KeyOf(diff.added[a]) == KeyOf(line)) {
      other = &diff.added[a];
    } else if (!take_removed && r > 0 && KeyOf(diff.removed[r - 1]) == KeyOf(line)) {
      other = &diff.removed[r - 1];
    }
    absl::StrAppend(&out, take_removed ? "-" : "+", Clip(line, other, max_width), "\n");
    (take_removed ? r : a)++;
    ++shown;
  }
  if (shown < total) absl::StrAppend(&out, "... and ", total - shown, " more lines\n");
  return out;
}

}  // namespace schemagate
