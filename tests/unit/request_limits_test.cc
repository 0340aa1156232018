// The request validators every handler calls (coordinator/server/request_limits.h).
#include "coordinator/server/request_limits.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace schemagate {
namespace {

using ::testing::HasSubstr;

MATCHER_P(InvalidWith, text, "") {
  return arg.code() == absl::StatusCode::kInvalidArgument &&
         std::string(arg.message()).find(text) != std::string::npos;
}

const std::string kChecksum(64, 'a');

TEST(RequestLimitsTest, AGoodAgentRequestPasses) {
  v1::CheckRequest check;
  check.mutable_target()->set_app("billing");
  check.mutable_target()->set_app_version("1.7.0");
  check.mutable_target()->set_known_version(20260101120000);
  check.mutable_target()->set_required_version(20260101120000);
  (*check.mutable_target()->mutable_checksums())[20260101120000] = kChecksum;
  check.set_instance_id("billing-7d9f-abcde");
  EXPECT_TRUE(ValidateCheckRequest(check).ok());
  v1::WaitRequest wait;
  *wait.mutable_target() = check.target();
  EXPECT_TRUE(ValidateWaitRequest(wait).ok());
  v1::AttachRequest attach;
  *attach.mutable_target() = check.target();
  attach.set_instance_id("billing-7d9f-abcde");
  EXPECT_TRUE(ValidateAttachRequest(attach).ok());
}

TEST(RequestLimitsTest, StringsAreBoundedAndPrintable) {
  v1::CheckRequest check;
  check.mutable_target()->set_app(std::string(kMaxNameLength + 1, 'a'));
  EXPECT_THAT(ValidateCheckRequest(check), InvalidWith("target.app must be printable text of at most 128"));
  check.mutable_target()->set_app("ok");
  check.mutable_target()->set_app_version("1.0\n");
  EXPECT_THAT(ValidateCheckRequest(check), InvalidWith("target.app_version"));
  check.mutable_target()->set_app_version("1.0");
  check.set_instance_id(std::string(kMaxInstanceIdLength + 1, 'x'));
  EXPECT_THAT(ValidateCheckRequest(check), InvalidWith("instance_id is longer than 253"));
  check.set_instance_id("pod 1");
  EXPECT_THAT(ValidateCheckRequest(check), InvalidWith("no spaces"));
  check.set_instance_id(std::string(kMaxInstanceIdLength, 'x'));
  EXPECT_TRUE(ValidateCheckRequest(check).ok());
}

TEST(RequestLimitsTest, VersionsAreCheckedAgainstEachOther) {
  v1::WaitRequest wait;
  wait.mutable_target()->set_known_version(-1);
  EXPECT_THAT(ValidateWaitRequest(wait), InvalidWith("must not be negative"));
  wait.mutable_target()->set_known_version(3);
  wait.mutable_target()->set_required_version(4);
  EXPECT_THAT(ValidateWaitRequest(wait), InvalidWith("R can never exceed K"));
  wait.mutable_target()->set_required_version(3);
  (*wait.mutable_target()->mutable_checksums())[0] = kChecksum;
  EXPECT_THAT(ValidateWaitRequest(wait), InvalidWith("versions are positive"));
  wait.mutable_target()->mutable_checksums()->clear();
  (*wait.mutable_target()->mutable_checksums())[2] = "ABC";
  EXPECT_THAT(ValidateWaitRequest(wait), InvalidWith("64 lower-case hex digits"));
}

TEST(RequestLimitsTest, TooManyChecksumsAreRefused) {
  v1::WaitRequest wait;
  auto* checksums = wait.mutable_target()->mutable_checksums();
  // Timestamp versions, as 'schemagatectl new' writes them.
  const int64_t base = 20260101000000;
  for (int v = 1; v <= kMaxChecksums; ++v) (*checksums)[base + v] = kChecksum;
  EXPECT_TRUE(ValidateWaitRequest(wait).ok());
  (*checksums)[base + kMaxChecksums + 1] = kChecksum;
  EXPECT_THAT(ValidateWaitRequest(wait), InvalidWith("at most 10000 checksums"));
  // The largest valid request fits under the default request size limit.
  (*checksums).erase(base + kMaxChecksums + 1);
  wait.mutable_target()->set_app(std::string(kMaxNameLength, 'a'));
  wait.mutable_target()->set_app_version(std::string(kMaxNameLength, 'a'));
  wait.set_instance_id(std::string(kMaxInstanceIdLength, 'a'));
  EXPECT_LT(wait.ByteSizeLong(), static_cast<size_t>(kDefaultMaxRequestBytes));
}

TEST(RequestLimitsTest, AttachMustNameTheInstanceFirst) {
  v1::AttachRequest first;
  EXPECT_THAT(ValidateAttachRequest(first), InvalidWith("instance_id is required"));
  first.set_instance_id("pod-1");
  first.set_goodbye(true);
  EXPECT_THAT(ValidateAttachRequest(first), InvalidWith("must name the instance"));
}

TEST(RequestLimitsTest, AttachTokenIsShortAndPrintable) {
  v1::AttachRequest first;
  first.set_instance_id("pod-1");
  first.set_attach_token(std::string(32, 'f'));
  EXPECT_TRUE(ValidateAttachRequest(first).ok());
  first.set_attach_token(std::string(kMaxAttachTokenLength + 1, 'f'));
  EXPECT_THAT(ValidateAttachRequest(first), InvalidWith("attach_token is longer than 64"));
  first.set_attach_token("a b");
  EXPECT_THAT(ValidateAttachRequest(first), InvalidWith("attach_token must be printable"));
}

TEST(RequestLimitsTest, OperatorRequestsAreBounded) {
  v1::ApplyRequest apply;
  apply.set_target_version(-5);
  EXPECT_THAT(ValidateApplyRequest(apply), InvalidWith("target_version must not be negative"));
  apply.set_target_version(0);
  apply.set_actor(std::string(kMaxNameLength + 1, 'a'));
  EXPECT_THAT(ValidateApplyRequest(apply), InvalidWith("actor must be printable"));
  apply.set_actor("alice@laptop");
  EXPECT_TRUE(ValidateApplyRequest(apply).ok());

  v1::RollbackRequest rollback;
  rollback.set_actor("bob\x1b[31m");
  EXPECT_THAT(ValidateRollbackRequest(rollback), InvalidWith("actor"));

  v1::RepairRequest repair;
  EXPECT_THAT(ValidateRepairRequest(repair), InvalidWith("action must be"));
  repair.set_action(v1::RepairRequest::RESUME);
  EXPECT_THAT(ValidateRepairRequest(repair), InvalidWith("positive version"));
  repair.set_action(v1::RepairRequest::CLEAR_FAILURE);
  EXPECT_TRUE(ValidateRepairRequest(repair).ok());
  repair.set_action(static_cast<v1::RepairRequest::Action>(99));
  EXPECT_THAT(ValidateRepairRequest(repair), InvalidWith("action must be"));

  v1::BaselineRequest baseline;
  EXPECT_THAT(ValidateBaselineRequest(baseline), InvalidWith("positive version"));

  v1::HistoryRequest history;
  history.set_limit(kMaxHistoryLimit + 1);
  EXPECT_THAT(ValidateHistoryRequest(history), InvalidWith("limit must be 0..10000"));
  history.set_limit(kMaxHistoryLimit);
  history.set_version(-1);
  EXPECT_THAT(ValidateHistoryRequest(history), InvalidWith("version must not be negative"));

  v1::PlanRequest plan;
  plan.set_target_version(-1);
  EXPECT_THAT(ValidatePlanRequest(plan), InvalidWith("target_version"));

  v1::WatchEventsRequest watch;
  watch.set_after_event_id(-1);
  EXPECT_THAT(ValidateWatchEventsRequest(watch), InvalidWith("after_event_id"));
  watch.set_after_event_id(42);
  EXPECT_TRUE(ValidateWatchEventsRequest(watch).ok());
}

}  // namespace
}  // namespace schemagate
