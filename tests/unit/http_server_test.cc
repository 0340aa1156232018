// The HTTP endpoint of --http-listen (cpp-httplib): routes, errors a user
// sees for a bad or taken address, and the request size limit.
#include "coordinator/server/http_server.h"

#include <httplib.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace schemagate {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<HttpServer> StartOnAnyPort(int* scrapes) {
  HttpRoutes routes;
  routes.metrics = [scrapes] {
    ++*scrapes;
    return absl::StrCat("schemagate_scrapes ", *scrapes, "\n");
  };
  absl::StatusOr<std::unique_ptr<HttpServer>> server =
      HttpServer::Start("127.0.0.1:0", std::move(routes), "--http-listen");
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

TEST(HttpServerTest, ServesMetricsAndHealthOnOneKeptAliveConnection) {
  int scrapes = 0;
  std::unique_ptr<HttpServer> server = StartOnAnyPort(&scrapes);
  ASSERT_NE(server, nullptr);
  ASSERT_GT(server->port(), 0);
  httplib::Client client("127.0.0.1", server->port());
  client.set_keep_alive(true);
  for (int i = 1; i <= 3; ++i) {
    httplib::Result res = client.Get("/metrics");
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(res->body, absl::StrCat("schemagate_scrapes ", i, "\n"));
    EXPECT_THAT(res->get_header_value("Content-Type"), HasSubstr("version=0.0.4"));
  }
  httplib::Result health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok\n");
  httplib::Result missing = client.Get("/nothing-here");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_THAT(missing->body, HasSubstr("/metrics"));
}

TEST(HttpServerTest, AnOversizedRequestIsRefusedAndTheServerKeepsServing) {
  int scrapes = 0;
  std::unique_ptr<HttpServer> server = StartOnAnyPort(&scrapes);
  ASSERT_NE(server, nullptr);
  httplib::Client client("127.0.0.1", server->port());
  httplib::Result big = client.Post("/metrics", std::string(1 << 20, 'x'), "text/plain");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  httplib::Result res = client.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST(HttpServerTest, ABadOrTakenAddressIsRefusedNamingTheFlag) {
  absl::StatusOr<std::unique_ptr<HttpServer>> bad =
      HttpServer::Start("9090", HttpRoutes{[] { return std::string(); }}, "--http-listen");
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("--http-listen '9090' is not host:port"));
  int scrapes = 0;
  std::unique_ptr<HttpServer> first = StartOnAnyPort(&scrapes);
  ASSERT_NE(first, nullptr);
  absl::StatusOr<std::unique_ptr<HttpServer>> taken = HttpServer::Start(
      absl::StrCat("127.0.0.1:", first->port()), HttpRoutes{[] { return std::string(); }},
      "--http-listen");
  EXPECT_FALSE(taken.ok());
  EXPECT_THAT(std::string(taken.status().message()), HasSubstr("cannot listen there"));
}

}  // namespace
}  // namespace schemagate
