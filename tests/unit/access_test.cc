// Tokens, the constant-time comparison, the file and address helpers of
// coordinator/server/access.h, the per-client stream cap and the client's
// security flags.
#include "coordinator/server/access.h"

#include <memory>
#include <string>
#include <vector>

#include "agent/channel.h"
#include "coordinator/server/proto_convert.h"
#include "coordinator/server/stream_quota.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(ConstantTimeEqualsTest, ComparesContentOfAnyLength) {
  EXPECT_TRUE(ConstantTimeEquals("s3cret-token", "s3cret-token"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals("s3cret-token", "s3cret-tokem"));
  EXPECT_FALSE(ConstantTimeEquals("s3cret-token", "s3cret-token-longer"));
  EXPECT_FALSE(ConstantTimeEquals("s3cret-token", ""));
  EXPECT_FALSE(ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0c", 3)));
}

TEST(AccessPolicyTest, WithoutTokensEveryCallIsAllowed) {
  AccessPolicy open;
  EXPECT_FALSE(open.enabled());
  EXPECT_TRUE(open.Authorize("", AccessRole::kOperator).ok());
  EXPECT_TRUE(open.Authorize("Bearer whatever", AccessRole::kAgent).ok());
}

TEST(AccessPolicyTest, OperatorTokenOpensEverythingAgentTokenOnlyTheAgentService) {
  AccessPolicy policy(AccessTokens{"op-token-1", "agent-token-1"});
  EXPECT_TRUE(policy.enabled());
  EXPECT_TRUE(policy.Authorize("Bearer op-token-1", AccessRole::kOperator).ok());
  EXPECT_TRUE(policy.Authorize("Bearer op-token-1", AccessRole::kAgent).ok());
  EXPECT_TRUE(policy.Authorize("bearer agent-token-1", AccessRole::kAgent).ok());
  absl::Status denied = policy.Authorize("Bearer agent-token-1", AccessRole::kOperator);
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(denied.message()), HasSubstr("operator token"));
}

TEST(AccessPolicyTest, MissingMalformedOrUnknownTokensAreUnauthenticatedAndNeverEchoed) {
  AccessPolicy policy(AccessTokens{"op-token-1", ""});
  for (const std::string& header :
       {std::string(""), std::string("op-token-1"), std::string("Basic b3A6dG9rZW4="),
        std::string("Bearer op-token-2"), std::string("Bearer op-token-1x"),
        std::string("Bearer ")}) {
    absl::Status status = policy.Authorize(header, AccessRole::kAgent);
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << header;
    EXPECT_THAT(std::string(status.message()), Not(HasSubstr("op-token"))) << header;
  }
}

TEST(AccessPolicyTest, SetTokensRotates) {
  AccessPolicy policy(AccessTokens{"old-token", ""});
  policy.SetTokens(AccessTokens{"new-token", "new-agent"});
  EXPECT_EQ(policy.Authorize("Bearer old-token", AccessRole::kAgent).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(policy.Authorize("Bearer new-token", AccessRole::kOperator).ok());
  EXPECT_TRUE(policy.Authorize("Bearer new-agent", AccessRole::kAgent).ok());
}

TEST(ReadTokenFileTest, TrimsTheNewlineAndRefusesEmptyOrMissingFiles) {
  TempDir dir;
  EXPECT_EQ(*ReadTokenFile("--operator-token-file", dir.Write("ok", "tok-123\n")), "tok-123");
  absl::StatusOr<std::string> empty = ReadTokenFile("--operator-token-file", dir.Write("e", " \n"));
  ASSERT_FALSE(empty.ok());
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("is empty"));
  absl::StatusOr<std::string> missing =
      ReadTokenFile("--agent-token-file", dir.path() + "/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("--agent-token-file: cannot read"));
  absl::StatusOr<std::string> spaced =
      ReadTokenFile("--agent-token-file", dir.Write("s", "two words-secret\n"));
  ASSERT_FALSE(spaced.ok());
  EXPECT_THAT(std::string(spaced.status().message()), Not(HasSubstr("words-secret")));
  EXPECT_FALSE(ReadPemFile("--tls-cert", dir.Write("p", "not a certificate")).ok());
  absl::StatusOr<std::string> directory = ReadTokenFile("--operator-token-file", dir.path());
  ASSERT_FALSE(directory.ok());
  EXPECT_THAT(std::string(directory.status().message()), HasSubstr("is a directory"));
}

TEST(CheckCertificateTest, RefusesPemThatIsNotACertificateOrAKeyOfIt) {
  const std::string junk = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n";
  absl::Status status = CheckCertificateAndKey("--tls-cert", "c.pem", junk, "--tls-key", "k.pem",
                                               "-----BEGIN PRIVATE KEY-----\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("--tls-cert: c.pem holds no PEM certificate"));
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("bm90")));
  status = CheckCertificateBundle("--tls-ca", "ca.pem", "-----BEGIN PRIVATE KEY-----\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("--tls-ca: ca.pem holds no PEM certificate"));
}

TEST(AddressTest, HostsAndLoopback) {
  EXPECT_EQ(AddressHost("127.0.0.1:50051"), "127.0.0.1");
  EXPECT_EQ(AddressHost("[::1]:50051"), "::1");
  EXPECT_EQ(AddressHost("sg-0.sg:50051"), "sg-0.sg");
  EXPECT_EQ(AddressHost("::1"), "::1");
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackHost("127.3.2.1"));
  EXPECT_TRUE(IsLoopbackHost("localhost"));
  EXPECT_TRUE(IsLoopbackHost("::1"));
  EXPECT_FALSE(IsLoopbackHost("0.0.0.0"));
  EXPECT_FALSE(IsLoopbackHost("127.evil.example"));
  EXPECT_FALSE(IsLoopbackHost("10.0.0.7"));
  EXPECT_EQ(PeerHost("ipv4:10.0.0.7:41000"), "10.0.0.7");
  EXPECT_EQ(PeerHost("ipv6:[::1]:41000"), "::1");
  EXPECT_EQ(PeerHost("unix:/run/sg.sock"), "unix:/run/sg.sock");
}

TEST(StreamQuotaTest, CapsStreamsPerHostAndReleasesSlots) {
  StreamQuota quota(2);
  auto a = quota.Acquire("ipv4:10.0.0.7:1000");
  auto b = quota.Acquire("ipv4:10.0.0.7:1001");
  ASSERT_TRUE(a.ok() && b.ok());
  auto c = quota.Acquire("ipv4:10.0.0.7:1002");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("--max-streams-per-client"));
  // Another host has its own allowance.
  EXPECT_TRUE(quota.Acquire("ipv4:10.0.0.8:1000").ok());
  a->reset();
  EXPECT_EQ(quota.open("ipv4:10.0.0.7:9"), 1);
  EXPECT_TRUE(quota.Acquire("ipv4:10.0.0.7:1003").ok());
  StreamQuota unlimited(0);
  std::vector<std::unique_ptr<StreamQuota::Slot>> slots;
  for (int i = 0; i < 100; ++i) slots.push_back(*unlimited.Acquire("ipv4:10.0.0.7:1"));
  EXPECT_EQ(unlimited.open("ipv4:10.0.0.7:2"), 100);
}

TEST(ClientSecurityTest, FlagsAreCheckedAndTheTokenStaysOutOfMessages) {
  TempDir dir;
  ClientSecurityFlags flags;
  flags.tls_cert = dir.Write("c.pem", "-----BEGIN CERTIFICATE-----\n");
  EXPECT_FALSE(LoadClientSecurity(flags).ok());  // No --tls-key.
  flags = ClientSecurityFlags();
  flags.token = "tok en";
  absl::StatusOr<ClientSecurity> bad = LoadClientSecurity(flags);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), Not(HasSubstr("tok en")));
  flags.token = "tok-1";
  flags.token_file = dir.Write("t", "tok-2\n");
  EXPECT_FALSE(LoadClientSecurity(flags).ok());  // Both.
  flags.token.clear();
  absl::StatusOr<ClientSecurity> ok = LoadClientSecurity(flags);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->token, "tok-2");
  EXPECT_FALSE(ok->tls);
  EXPECT_EQ(CleartextTokenWarning(*ok, {"127.0.0.1:50051"}), "");
  EXPECT_THAT(CleartextTokenWarning(*ok, {"127.0.0.1:50051", "sg-1:50051"}),
              HasSubstr("without TLS to sg-1:50051"));
}

TEST(ToGrpcTest, ErrorsSentToClientsCarryNoPassword) {
  grpc::Status status = ToGrpc(absl::UnavailableError(
      "connection to postgres://app:hunter2@db:5432/app failed; password=hunter2"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), Not(HasSubstr("hunter2")));
  EXPECT_THAT(status.error_message(), HasSubstr("app:***@db"));
  EXPECT_TRUE(ToGrpc(absl::OkStatus()).ok());
}

}  // namespace
}  // namespace schemagate
