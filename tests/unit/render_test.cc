#include "ctl/render.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace schemagate {
namespace {

using ::testing::HasSubstr;

TEST(RenderTest, TablesAlignColumns) {
  EXPECT_EQ(FormatTable({{"A", "BB"}, {"ccc", "d"}}), "A    BB\nccc  d\n");
}

TEST(RenderTest, DurationsReadNaturally) {
  google::protobuf::Duration d;
  d.set_nanos(12000000);
  EXPECT_EQ(FormatDuration(d), "12ms");
  d.set_seconds(3);
  d.set_nanos(200000000);
  EXPECT_EQ(FormatDuration(d), "3.2s");
  d.set_seconds(245);
  d.set_nanos(0);
  EXPECT_EQ(FormatDuration(d), "4m05s");
}

TEST(RenderTest, ProgressLinesNameTheMigrationAndStatement) {
  v1::RunProgress p;
  p.set_kind(v1::STATEMENT_STARTED);
  p.set_version(3);
  p.set_name("add_index");
  p.set_statement_index(2);
  p.set_statement_count(5);
  EXPECT_THAT(RenderProgress(p), HasSubstr("3_add_index: statement 2/5"));
}

TEST(RenderTest, StatusShowsTheFailure) {
  v1::Status s;
  s.set_state(v1::SET_FAILED);
  s.mutable_failure()->set_version(7);
  s.mutable_failure()->set_sqlstate("42P01");
  s.mutable_failure()->set_message("relation \"x\" does not exist");
  const std::string text = RenderStatus(s);
  EXPECT_THAT(text, HasSubstr("state:        FAILED"));
  EXPECT_THAT(text, HasSubstr("[SQLSTATE 42P01] relation \"x\" does not exist"));
}

TEST(RenderTest, StatusPlanHistoryAndProgressShowRepeatables) {
  v1::Status s;
  s.set_state(v1::SET_FAILED);
  s.mutable_failure()->set_repeatable(true);
  s.mutable_failure()->set_name("views");
  s.mutable_failure()->set_sqlstate("42P01");
  s.set_pending_repeatables(1);
  v1::Repeatable* applied = s.add_repeatables();
  applied->set_name("grants");
  applied->set_state(v1::REPEATABLE_APPLIED);
  applied->set_checksum("0123456789abcdef");
  applied->set_applied_checksum("0123456789abcdef");
  applied->mutable_applied_at()->set_seconds(1764720000);
  v1::Repeatable* fresh = s.add_repeatables();
  fresh->set_name("views");
  fresh->set_state(v1::REPEATABLE_NEW);
  fresh->set_checksum("fedcba9876543210");
  const std::string status = RenderStatus(s);
  EXPECT_THAT(status, HasSubstr("failure:      repeatable views [SQLSTATE 42P01]"));
  EXPECT_THAT(status, HasSubstr("repeatables:  2 (1 to apply)"));
  EXPECT_THAT(status, HasSubstr("grants  applied  0123456789ab  applied 2025-12-03"));
  EXPECT_THAT(status, HasSubstr("views  new  fedcba987654  applied never"));

  v1::PlanResponse plan;
  v1::PlanStep* step = plan.add_steps();
  step->set_repeatable("views");
  step->set_name("views");
  step->set_reason("changed");
  step->set_transactional(true);
  step->add_statements("CREATE OR REPLACE VIEW v AS SELECT 1");
  EXPECT_THAT(RenderPlan(plan), HasSubstr("1. repeatable views (changed)  [transaction"));

  v1::HistoryResponse history;
  v1::Event* event = history.add_events();
  event->set_kind("repeatable");
  event->set_name("views");
  event->set_message("re-applied (changed): checksum aaa -> bbb");
  EXPECT_THAT(RenderHistory(history), HasSubstr("repeatable  R views"));
  EXPECT_THAT(RenderEvent(*event), HasSubstr("repeatable  repeatable views"));

  v1::RunProgress p;
  p.set_kind(v1::MIGRATION_FINISHED);
  p.set_name("views");
  EXPECT_THAT(RenderProgress(p), HasSubstr("applied  repeatable views"));
}

TEST(RenderTest, ASetThatDisagreesWithTheDatabaseIsCalledConflictAsInJson) {
  v1::Status s;
  s.set_state(v1::CONFLICT);
  EXPECT_THAT(RenderStatus(s), HasSubstr("state:        CONFLICT\n"));
  EXPECT_THAT(ToJson(s, false), HasSubstr("\"state\":\"CONFLICT\""));
}

TEST(RenderTest, ADirtyMigrationShowsItsProgressNotADuration) {
  v1::ListMigrationsResponse response;
  v1::Migration* m = response.add_migrations();
  m->set_version(4);
  m->set_name("index_items");
  m->set_state(v1::MIGRATION_DIRTY);
  m->set_checksum("abc");
  m->set_applied_checksum("abc");
  m->set_statement_count(3);
  m->set_statements_done(1);
  const std::string text = RenderMigrations(response);
  EXPECT_THAT(text, HasSubstr("DIRTY 1/3 statements done"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("0ms")));
  EXPECT_THAT(ToJson(response, false), HasSubstr("\"statements_done\":1"));
}

TEST(RenderTest, ValidateSetsADirtyMigrationsIndexesApartFromDrift) {
  v1::ValidateResponse response;
  response.add_problems("version 4 (index_items) is dirty: cut after statement 1");
  v1::SchemaDriftCheck* schema = response.mutable_schema();
  schema->set_checked(true);
  v1::DirtyMigrationChanges* dirty = schema->mutable_dirty_migration();
  dirty->set_version(4);
  dirty->set_name("index_items");
  dirty->add_added("table public.items index items_id: CREATE INDEX items_id ON public.items");
  const std::string text = RenderValidate(response);
  EXPECT_THAT(text, HasSubstr("not drift: dirty migration 4 (index_items)"));
  EXPECT_THAT(text, HasSubstr("'schemagatectl repair --resume 4'"));
  EXPECT_THAT(text, HasSubstr("  +table public.items index items_id"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("outside schemagate")));
}

TEST(RenderTest, JsonUsesProtoFieldNames) {
  v1::Status s;
  s.set_applied_version(5);
  const std::string json = ToJson(s, false);
  EXPECT_THAT(json, HasSubstr("\"applied_version\":\"5\""));
  EXPECT_EQ(json.back(), '\n');
}

}  // namespace
}  // namespace schemagate
