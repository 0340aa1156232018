// The pure half of the schema description: which drift lines a cut
// no-transaction migration's own index statements account for.
#include "coordinator/engine/schema_description.h"

#include <string>
#include <vector>

#include "coordinator/sql/sql_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace schemagate {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<IndexStatement> Describe(const std::vector<std::string>& sql) {
  std::vector<IndexStatement> out;
  for (const std::string& s : sql) out.push_back(DescribeIndexStatement(s));
  return out;
}

TEST(TakeIndexChangesTest, TakesTheIndexesACutMigrationMadeAndLeavesTheRest) {
  SchemaDiff diff;
  diff.added = {
      "table public.items column sneaky: integer",
      "table public.items index items_id: CREATE INDEX items_id ON public.items USING btree (id)",
      "table public.items index items_slow_key: CREATE INDEX items_slow_key ON public.items "
      "USING btree (public.slow_key(id)) [invalid]",
      // Same name, another table: not the migration's.
      "table public.other index items_id2: CREATE INDEX items_id2 ON public.other USING btree (id)",
  };
  diff.removed = {"table public.items index items_old: CREATE INDEX items_old ON public.items "
                  "USING btree (id)"};
  const SchemaDiff taken = TakeIndexChanges(
      &diff, Describe({"CREATE INDEX CONCURRENTLY items_id ON items (id)",
                       "CREATE INDEX CONCURRENTLY items_slow_key ON public.items (slow_key(id))",
                       "CREATE INDEX CONCURRENTLY items_id2 ON items (id)",
                       "DROP INDEX CONCURRENTLY items_old", "VACUUM items"}));
  EXPECT_THAT(taken.added,
              ElementsAre(::testing::StartsWith("table public.items index items_id:"),
                          ::testing::StartsWith("table public.items index items_slow_key:")));
  EXPECT_THAT(taken.removed, ElementsAre(::testing::StartsWith("table public.items index items_old:")));
  EXPECT_THAT(diff.added, ElementsAre("table public.items column sneaky: integer",
                                      ::testing::StartsWith("table public.other index items_id2:")));
  EXPECT_THAT(diff.removed, IsEmpty());
}

TEST(TakeIndexChangesTest, MatchesSchemasAndQuotedNamesAsTheCatalogWritesThem) {
  SchemaDiff diff;
  diff.added = {
      "table app.\"Items\" index \"Items By Id\": CREATE INDEX ...",
      "table other.\"Items\" index \"Items By Id\": CREATE INDEX ...",
      "materialized view app.totals index totals_day: CREATE UNIQUE INDEX ...",
  };
  const SchemaDiff taken = TakeIndexChanges(
      &diff, Describe({"CREATE INDEX \"Items By Id\" ON app.\"Items\" (id)",
                       "CREATE UNIQUE INDEX CONCURRENTLY totals_day ON totals (day)"}));
  EXPECT_THAT(taken.added, ElementsAre("table app.\"Items\" index \"Items By Id\": CREATE INDEX ...",
                                       ::testing::StartsWith("materialized view app.totals")));
  EXPECT_THAT(diff.added, ElementsAre(::testing::StartsWith("table other.")));
  // A drop explains a removed line only, a create an added one.
  SchemaDiff other;
  other.removed = {"table public.t index t_a: CREATE INDEX ..."};
  EXPECT_TRUE(TakeIndexChanges(&other, Describe({"CREATE INDEX t_a ON t (a)"})).empty());
  EXPECT_EQ(other.removed.size(), 1u);
}

}  // namespace
}  // namespace schemagate
