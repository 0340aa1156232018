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

TEST(RenderTest, JsonUsesProtoFieldNames) {
  v1::Status s;
  s.set_applied_version(5);
  const std::string json = ToJson(s, false);
  EXPECT_THAT(json, HasSubstr("\"applied_version\":\"5\""));
  EXPECT_EQ(json.back(), '\n');
}

}  // namespace
}  // namespace schemagate
