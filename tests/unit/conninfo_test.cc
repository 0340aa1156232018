#include "coordinator/base/conninfo.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace schemagate {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(ConninfoTest, RedactsUrlPasswords) {
  EXPECT_EQ(RedactSecrets("postgres://app:s3cret@db:5432/app"),
            "postgres://app:***@db:5432/app");
  EXPECT_EQ(RedactSecrets("connecting to postgresql://u:p%40ss@h/db?sslmode=require now"),
            "connecting to postgresql://u:***@h/db?sslmode=require now");
}

TEST(ConninfoTest, LeavesUrlsWithoutPasswordAlone) {
  EXPECT_EQ(RedactSecrets("postgres://app@db/app"), "postgres://app@db/app");
  EXPECT_EQ(RedactSecrets("http://host:8080/path"), "http://host:8080/path");
}

TEST(ConninfoTest, RedactsKeyValueAndUrlParameterPasswords) {
  EXPECT_EQ(RedactSecrets("host=db password=hunter2 dbname=app"),
            "host=db password=*** dbname=app");
  EXPECT_EQ(RedactSecrets("host=db password = 'a b\\'c' user=x"),
            "host=db password = *** user=x");
  EXPECT_EQ(RedactSecrets("postgres://db/app?user=x&password=hunter2&sslmode=require"),
            "postgres://db/app?user=x&password=***&sslmode=require");
  EXPECT_EQ(RedactSecrets("PASSWORD=abc"), "PASSWORD=***");
}

TEST(ConninfoTest, RedactionKeepsOrdinaryText) {
  EXPECT_EQ(RedactSecrets("the password is required"), "the password is required");
  EXPECT_EQ(RedactSecrets(""), "");
}

TEST(ConninfoTest, AddsKeepalivesToUrlsAndKeyValueStrings) {
  const std::string url = WithKeepalives("postgres://u@h/db");
  EXPECT_THAT(url, HasSubstr("postgres://u@h/db?keepalives=1&"));
  EXPECT_THAT(url, HasSubstr("tcp_user_timeout=10000"));
  const std::string with_query = WithKeepalives("postgres://u@h/db?sslmode=disable");
  EXPECT_THAT(with_query, HasSubstr("?sslmode=disable&keepalives=1"));
  const std::string kv = WithKeepalives("host=h dbname=db");
  EXPECT_THAT(kv, HasSubstr("host=h dbname=db keepalives=1 keepalives_idle=5"));
}

TEST(ConninfoTest, KeepsTheUsersOwnSettings) {
  const std::string url = WithKeepalives("postgres://u@h/db?keepalives_idle=60");
  EXPECT_THAT(url, HasSubstr("keepalives_idle=60"));
  EXPECT_THAT(url, Not(HasSubstr("keepalives_idle=5")));
}

TEST(ConninfoTest, TheServersEndGetsTheSameKeepalives) {
  EXPECT_THAT(ServerKeepaliveSql(),
              HasSubstr("SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; "
                        "SET tcp_keepalives_count = 3; SET tcp_user_timeout = 10000;"));
  EXPECT_THAT(ServerKeepaliveSql(),
              HasSubstr("set_config('client_connection_check_interval', '2s', false)"));
}

}  // namespace
}  // namespace schemagate
