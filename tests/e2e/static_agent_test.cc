// The static agent (DESIGN.md "The agent binary") in an empty root: a
// chroot holding only the binary and /etc/hosts, no /lib, no loader, no
// nsswitch.conf, against a coordinator on loopback. Built only with
// SCHEMAGATE_STATIC_AGENT=ON (tests/CMakeLists.txt).
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>

#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::BinaryPath;
using ::schemagate::testing::CoordinatorProcess;
using ::schemagate::testing::RunBinary;
using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;
using ::schemagate::testing::WriteTrivialMigrations;
using ::testing::HasSubstr;

// Every path under `root`, relative to it.
std::set<std::string> Contents(const std::string& root) {
  std::set<std::string> paths;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    paths.insert(std::filesystem::relative(entry.path(), root).string());
  }
  return paths;
}

TEST(StaticAgentTest, ReachesReadyInARootHoldingOnlyItselfAndEtcHosts) {
  if (geteuid() != 0) GTEST_SKIP() << "chroot(2) needs root; run the e2e suite as root";
  SG_REQUIRE_DATABASE();
  TestDatabase db;
  TempDir migrations;
  WriteTrivialMigrations(migrations, 1, 2);
  CoordinatorProcess coordinator(db.url(), migrations.path());
  const std::string& listening = coordinator.address();
  const std::string port = listening.substr(listening.rfind(':') + 1);
  ASSERT_FALSE(port.empty()) << listening;

  TempDir root;
  root.Write("etc/hosts", "127.0.0.1 localhost\n::1 localhost\n");
  std::filesystem::copy_file(BinaryPath("schemagate-agent"), root.path() + "/schemagate-agent");
  std::filesystem::permissions(root.path() + "/schemagate-agent",
                               std::filesystem::perms::owner_all);
  ASSERT_EQ(Contents(root.path()), (std::set<std::string>{"etc", "etc/hosts", "schemagate-agent"}));
  auto in_root = [&](std::vector<std::string> args) {
    // coreutils chroot(8): chroot(2), then exec inside the root.
    std::vector<std::string> argv = {"/usr/sbin/chroot", root.path(), "/schemagate-agent"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  };

  // A name, so the resolver inside the binary reads the root's /etc/hosts.
  const std::string address = "localhost:" + port;
  std::string out;
  EXPECT_EQ(
      RunBinary(in_root({"wait", "--coordinator", address, "--known", "2", "--timeout", "60s"}),
                &out),
      0)
      << out;
  EXPECT_EQ(RunBinary(in_root({"check", "--coordinator", address, "--known", "2"}), &out), 0)
      << out;
  EXPECT_THAT(out, HasSubstr("READY: schema is at version 2"));

  // The fallback's libpq, linked in too, resolves the database's host there.
  const std::string url = absl::StrReplaceAll(db.url(), {{"@127.0.0.1:", "@localhost:"}});
  EXPECT_EQ(RunBinary(in_root({"check", "--coordinator", "localhost:1", "--known", "2",
                               "--fallback-database-url", url}),
                      &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("read from the database directly"));
  // Nothing was written into the root.
  EXPECT_EQ(Contents(root.path()), (std::set<std::string>{"etc", "etc/hosts", "schemagate-agent"}));
}

}  // namespace
}  // namespace schemagate
