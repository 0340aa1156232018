// A readable, deterministic description of a database's user schema and its
// SHA-256 fingerprint: what `schemagatectl verify` compares before and after
// a down, what `schemagatectl snapshot` records and what a drift check
// compares against a snapshot.
//
// The description is one line per schema object, each "<key>: <definition>"
// (or just "<key>"), where the key names the object and, for parts of a
// table, the table first. Lines are sorted by key, then bytewise, so each
// table heads its parts:
//
//   table public.users
//   table public.users column email: text not null
//   table public.users constraint users_email_check: CHECK ((email ~~ '_%@_%'::text))
//   table public.users index users_email_lower_key: CREATE UNIQUE INDEX ...
//   table public.users trigger users_set_updated_at: CREATE TRIGGER ...
//   function public.set_updated_at(): CREATE OR REPLACE FUNCTION ...
//
// Definitions come from PostgreSQL itself (format_type, pg_get_expr,
// pg_get_constraintdef, pg_get_indexdef, pg_get_viewdef, pg_get_functiondef,
// pg_get_triggerdef, ...), read in one repeatable-read snapshot with
// search_path, TimeZone, DateStyle, IntervalStyle and extra_float_digits
// pinned, so every name is schema-qualified and the text depends neither on
// the session nor on OIDs. Newlines inside a definition (function bodies,
// view queries) are written as "\n" and backslashes as "\\", keeping one
// line per object.
//
// Covered, in every schema except pg_catalog, information_schema, pg_toast*,
// pg_temp* (every "pg_" schema) and the bookkeeping schema:
//   - schemas and installed extensions (name, version, schema);
//   - tables (plain, partitioned, partitions with their bounds, foreign,
//     inheritance, unlogged, row level security, replica identity, storage
//     parameters); columns by name (type, collation, NOT NULL, default,
//     identity, generated expression);
//   - constraints with their definition, including NOT VALID while a
//     constraint is not validated, and DEFERRABLE;
//   - indexes (pg_get_indexdef, plus "[invalid]" for indisvalid = false, e.g.
//     a failed CREATE INDEX CONCURRENTLY), also on materialized views;
//   - views and materialized views (query and options), sequences (type,
//     start, increment, bounds, cache, cycle, owning column or identity);
//   - functions, procedures (pg_get_functiondef) and aggregates;
//   - triggers (pg_get_triggerdef, enabled state; internal FK triggers are
//     left out since the constraint covers them), rules, row level security
//     policies, extended statistics;
//   - types: enums (labels in order), domains (base type, NOT NULL, default,
//     constraints), composite types (attributes in order), ranges, base types;
//   - comments on schemas, tables, views, sequences, indexes, columns,
//     constraints, triggers, functions and types.
// Objects that belong to an extension are described by the extension line
// only.
//
// Deliberately not covered:
//   - data, including sequence values (last_value) and table statistics;
//   - physical column order: columns are listed by name, so a column dropped
//     and added again (which moves it to the end) reads the same;
//   - owners, privileges (GRANT/REVOKE, default privileges), security labels
//     and roles (they differ between environments and are cluster-wide);
//   - tablespaces, column storage / compression / statistics targets;
//   - comments on rules, policies, statistics and extensions;
//   - operators, operator classes and families, casts, collations,
//     conversions, text search objects, foreign data wrappers, servers and
//     user mappings, publications, subscriptions, event triggers;
//   - OIDs, and anything outside the database connected to.
// The text comes from the server's deparser, so two servers of different
// major versions may describe the same schema differently: compare
// fingerprints taken on the same PostgreSQL major version.
#ifndef SCHEMAGATE_COORDINATOR_ENGINE_SCHEMA_DESCRIPTION_H_
#define SCHEMAGATE_COORDINATOR_ENGINE_SCHEMA_DESCRIPTION_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "coordinator/sql/sql_split.h"

namespace schemagate {

// First line of every description; bumped whenever the format changes, so a
// stored snapshot never silently compares against another format.
inline constexpr char kSchemaDescriptionHeader[] = "# schemagate schema description v1";

struct SchemaDescription {
  // One line per object, sorted by key then bytewise, without the header.
  std::vector<std::string> lines;
  // kSchemaDescriptionHeader and every line, each ending in '\n'.
  std::string text;
  // Lower-case hex SHA-256 of `text`.
  std::string fingerprint;

  bool operator==(const SchemaDescription& other) const {
    return fingerprint == other.fingerprint;
  }
  bool operator!=(const SchemaDescription& other) const { return !(*this == other); }
};

// Builds a description from unsorted lines (sorts them; computes text and
// fingerprint). DescribeSchema's last step; also for tests and for reading
// a snapshot back.
SchemaDescription MakeSchemaDescription(std::vector<std::string> lines);

// Reads back a description's `text` (as stored after a run, or written by
// `schemagatectl snapshot`): the header line is skipped.
SchemaDescription ParseSchemaDescription(absl::string_view text);

// Lines present in only one of two descriptions.
struct SchemaDiff {
  // In `expected` only: what `actual` lacks ("-" lines).
  std::vector<std::string> removed;
  // In `actual` only: what `actual` has in addition ("+" lines).
  std::vector<std::string> added;
  bool empty() const { return removed.empty() && added.empty(); }
};

SchemaDiff DiffSchemas(const SchemaDescription& expected, const SchemaDescription& actual);

// The lines of `diff` that the index statements in `statements` account
// for, moved out of `diff`: a CREATE INDEX explains a "+" line of that index
// on that table (valid or "[invalid]", as a cut CONCURRENTLY leaves it), a
// DROP INDEX a "-" line of that index. A name written without a schema
// matches the index in any schema (search_path chose it). Other statements
// explain nothing. What validate uses to tell a cut no-transaction
// migration's own indexes from drift.
SchemaDiff TakeIndexChanges(SchemaDiff* diff, const std::vector<IndexStatement>& statements);

// One sentence for logs and history: how many lines differ from the schema
// recorded after run `recorded_run_id`, and the first object that differs.
std::string DescribeDrift(const SchemaDiff& diff, const std::string& recorded_run_id);

// A short unified-style rendering:
//   --- <expected_label>
//   +++ <actual_label>
//   -table public.t index t_a_idx: CREATE INDEX ...
//   +...
// Lines are merged in sorted order, so a changed object shows as an adjacent
// -/+ pair. At most `max_lines` change lines, then "... and N more lines";
// each line cut at `max_width` bytes (0: never).
std::string FormatSchemaDiff(const SchemaDiff& diff, const std::string& expected_label,
                             const std::string& actual_label, size_t max_lines = 40,
                             size_t max_width = 400);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_ENGINE_SCHEMA_DESCRIPTION_H_
