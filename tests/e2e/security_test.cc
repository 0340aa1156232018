// Access control and bad input, end to end: schemagated with TLS, mutual
// TLS and both token files, driven by the real agent and schemagatectl and
// by a raw gRPC client; and a flood of bad and idle clients beside a good
// agent. Certificates are made with the openssl command line per test.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "agent/channel.h"
#include "coordinator/base/flags.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "schemagate/v1/schemagate.grpc.pb.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::EnvInt;
using ::schemagate::testing::BinaryPath;
using ::schemagate::testing::CoordinatorProcess;
using ::schemagate::testing::RunBinary;
using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kOperatorToken[] = "op-5f0c1e9a7b3d4c2e8f61a0b9c7d5e3f1";
constexpr char kAgentToken[] = "ag-0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a";
constexpr char kWrongToken[] = "xx-1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d";
constexpr char kDatabasePassword[] = "pw-Sup3rSecretDbPassw0rd";

// The test database's URL with a password (the test server trusts loopback,
// so any password connects; the point is that it is never shown).
std::string WithPassword(const std::string& url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  const size_t start = scheme + 3;
  const size_t at = url.find('@', start);
  const size_t slash = url.find('/', start);
  if (at != std::string::npos && (slash == std::string::npos || at < slash)) {
    const std::string user = url.substr(start, at - start);
    if (user.find(':') != std::string::npos) return url;  // Has one already.
    return absl::StrCat(url.substr(0, at), ":", kDatabasePassword, url.substr(at));
  }
  return absl::StrCat(url.substr(0, start), "postgres:", kDatabasePassword, "@",
                      url.substr(start));
}

// A CA, a server certificate for 127.0.0.1/localhost, a client
// certificate, and a second CA that signed nothing here.
struct Certificates {
  std::string ca, server_cert, server_key, client_cert, client_key, other_ca;
};

Certificates MakeCertificates(const TempDir& dir) {
  const std::string d = dir.path();
  dir.Write("server.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  dir.Write("client.ext", "extendedKeyUsage=clientAuth\n");
  const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  const std::string script = absl::StrCat(
      "set -e; cd ", d, "\n",
      "openssl req -x509 ", key, " -keyout ca.key -out ca.pem -days 2 -subj /CN=sg-test-ca\n",
      "openssl req -x509 ", key, " -keyout other.key -out other-ca.pem -days 2 -subj /CN=other\n",
      "openssl req ", key, " -keyout server.key -out server.csr -subj /CN=localhost\n",
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
      "-extfile server.ext -out server.pem\n",
      "openssl req ", key, " -keyout client.key -out client.csr -subj /CN=sg-test-client\n",
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
      "-extfile client.ext -out client.pem\n");
  std::string out;
  EXPECT_EQ(RunBinary({"/bin/sh", "-c", script}, &out), 0) << out;
  return Certificates{d + "/ca.pem",     d + "/server.pem", d + "/server.key",
                      d + "/client.pem", d + "/client.key", d + "/other-ca.pem"};
}

// Attaches as instance "pod-1" and returns how the stream ended (after the
// first answer, if any, the test hangs up).
grpc::Status AttachStatus(v1::AgentService::Stub* stub) {
  grpc::ClientContext context;
  SetDeadline(&context, absl::Seconds(10));
  auto stream = stub->Attach(&context);
  v1::AttachRequest first;
  first.set_instance_id("pod-1");
  stream->Write(first);
  v1::Readiness answer;
  if (stream->Read(&answer)) {
    v1::AttachRequest goodbye;
    goodbye.set_goodbye(true);
    stream->Write(goodbye);
    stream->WritesDone();
    while (stream->Read(&answer)) {
    }
  }
  return stream->Finish();
}

std::string Joined(const std::vector<std::string>& argv) { return absl::StrJoin(argv, " "); }

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    db_ = std::make_unique<TestDatabase>();
    testing::WriteTrivialMigrations(migrations_, 1, 3);
    certs_ = MakeCertificates(secrets_);
    operator_file_ = secrets_.Write("operator.token", absl::StrCat(kOperatorToken, "\n"));
    agent_file_ = secrets_.Write("agent.token", absl::StrCat(kAgentToken, "\n"));
  }

  // schemagated with TLS, mutual TLS, both tokens and a password in its
  // database URL; verbose, so everything it might log is logged.
  void StartSecureCoordinator() {
    coordinator_ = std::make_unique<CoordinatorProcess>(
        WithPassword(db_->url()), migrations_.path(),
        std::vector<std::string>{"-v", "--tls-cert", certs_.server_cert, "--tls-key",
                                 certs_.server_key, "--tls-client-ca", certs_.ca,
                                 "--operator-token-file", operator_file_, "--agent-token-file",
                                 agent_file_});
  }

  std::vector<std::string> Tls() const {
    return {"--tls-ca", certs_.ca, "--tls-cert", certs_.client_cert, "--tls-key",
            certs_.client_key};
  }

  // Runs a binary, keeps its output for the no-secrets check.
  int Run(std::vector<std::string> argv, std::string* out) {
    const int code = RunBinary(argv, out, absl::Seconds(60));
    outputs_.push_back(absl::StrCat("$ ", Joined(argv), "\n", *out));
    return code;
  }

  int Agent(const std::string& command, std::vector<std::string> args, std::string* out) {
    std::vector<std::string> argv = {BinaryPath("schemagate-agent"), command, "--coordinator",
                                     coordinator_->address(), "--timeout", "30s"};
    argv.insert(argv.end(), args.begin(), args.end());
    return Run(argv, out);
  }

  int Ctl(const std::string& command, std::vector<std::string> args, std::string* out) {
    std::vector<std::string> argv = {BinaryPath("schemagatectl"), command, "--coordinator",
                                     coordinator_->address(), "--timeout", "10s"};
    argv.insert(argv.end(), args.begin(), args.end());
    return Run(argv, out);
  }

  std::vector<std::string> With(std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }

  // A channel of the test's own, with the client certificate.
  std::shared_ptr<grpc::Channel> Channel(const std::string& token) const {
    ClientSecurityFlags flags;
    flags.tls_ca = certs_.ca;
    flags.tls_cert = certs_.client_cert;
    flags.tls_key = certs_.client_key;
    flags.token = token;
    absl::StatusOr<ClientSecurity> security = LoadClientSecurity(flags);
    EXPECT_TRUE(security.ok()) << security.status();
    return NewCoordinatorChannel(coordinator_->address(), *security);
  }

  grpc::StatusCode GetStatusCode(const std::string& token) const {
    auto stub = v1::OperatorService::NewStub(Channel(token));
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(10));
    v1::Status response;
    return stub->GetStatus(&context, v1::GetStatusRequest(), &response).error_code();
  }

  grpc::StatusCode AttachCode(const std::string& token) const {
    auto stub = v1::AgentService::NewStub(Channel(token));
    return AttachStatus(stub.get()).error_code();
  }

  grpc::StatusCode CheckCode(const std::string& token) const {
    auto stub = v1::AgentService::NewStub(Channel(token));
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(10));
    v1::Readiness response;
    return stub->Check(&context, v1::CheckRequest(), &response).error_code();
  }

  std::unique_ptr<TestDatabase> db_;
  TempDir migrations_, secrets_;
  Certificates certs_;
  std::string operator_file_, agent_file_;
  std::unique_ptr<CoordinatorProcess> coordinator_;
  std::vector<std::string> outputs_;
};

TEST_F(SecurityTest, CallsWithoutATokenAreUnauthenticated) {
  StartSecureCoordinator();
  EXPECT_EQ(GetStatusCode(""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(CheckCode(""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(AttachCode(""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(AttachCode(kAgentToken), grpc::StatusCode::OK);
  EXPECT_EQ(GetStatusCode(kWrongToken), grpc::StatusCode::UNAUTHENTICATED);
  std::string out;
  EXPECT_EQ(Agent("check", Tls(), &out), 6) << out;
  EXPECT_THAT(out, HasSubstr("needs a token"));
  EXPECT_EQ(Agent("wait", With(Tls(), {"--token", kWrongToken}), &out), 6) << out;
  EXPECT_EQ(Ctl("status", Tls(), &out), 6) << out;
  EXPECT_THAT(out, HasSubstr("needs a token"));
  // Health stays open for probes.
  EXPECT_EQ(Ctl("health", Tls(), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("SERVING"));
}

TEST_F(SecurityTest, TheAgentTokenOpensTheAgentServiceOnly) {
  StartSecureCoordinator();
  EXPECT_EQ(GetStatusCode(kAgentToken), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(CheckCode(kAgentToken), grpc::StatusCode::OK);
  std::string out;
  EXPECT_EQ(Ctl("status", With(Tls(), {"--token", kAgentToken}), &out), 6) << out;
  EXPECT_THAT(out, HasSubstr("operator token"));
  EXPECT_EQ(Ctl("history", With(Tls(), {"--token", kAgentToken}), &out), 6) << out;
  // Through the environment, as a Kubernetes secret would give it.
  EXPECT_EQ(RunBinary(With({BinaryPath("schemagate-agent"), "wait", "--coordinator",
                            coordinator_->address(), "--timeout", "60s",
                            "--migrations-dir", migrations_.path()},
                           Tls()),
                      &out, absl::Seconds(90), {{"SCHEMAGATE_TOKEN", kAgentToken}}),
            0)
      << out;
  outputs_.push_back(out);
  EXPECT_THAT(out, HasSubstr("READY"));
}

TEST_F(SecurityTest, TheOperatorTokenOpensEverything) {
  StartSecureCoordinator();
  EXPECT_EQ(GetStatusCode(kOperatorToken), grpc::StatusCode::OK);
  EXPECT_EQ(CheckCode(kOperatorToken), grpc::StatusCode::OK);
  std::string out;
  const std::string token_file = secrets_.Write("ctl.token", kOperatorToken);
  EXPECT_EQ(Agent("wait", With(Tls(), {"--token-file", token_file}), &out), 0) << out;
  EXPECT_EQ(Ctl("migrations", With(Tls(), {"--token", kOperatorToken}), &out), 0) << out;
  EXPECT_EQ(Ctl("status", With(Tls(), {"--token-file", token_file}), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("CURRENT"));
  EXPECT_EQ(Ctl("history", With(Tls(), {"--token", kOperatorToken}), &out), 0) << out;
}

TEST_F(SecurityTest, PlaintextWrongCaAndMissingClientCertificateFail) {
  StartSecureCoordinator();
  std::string out;
  // Plaintext against the TLS port: no coordinator answers (7).
  EXPECT_EQ(Agent("check", {"--token", kAgentToken}, &out), 7) << out;
  EXPECT_THAT(out, HasSubstr("if the coordinator serves TLS, pass --tls-ca"));
  EXPECT_NE(Ctl("status", {"--token", kOperatorToken}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("If it serves TLS, pass --tls-ca"));
  // A CA that did not sign the server's certificate.
  const std::vector<std::string> wrong_ca = {"--tls-ca", certs_.other_ca, "--tls-cert",
                                             certs_.client_cert, "--tls-key", certs_.client_key};
  EXPECT_EQ(Agent("check", With(wrong_ca, {"--token", kAgentToken}), &out), 7) << out;
  EXPECT_NE(Ctl("status", With(wrong_ca, {"--token", kOperatorToken}), &out), 0) << out;
  // Mutual TLS: the right CA but no client certificate.
  EXPECT_EQ(Agent("check", {"--tls-ca", certs_.ca, "--token", kAgentToken}, &out), 7) << out;
  EXPECT_THAT(out, HasSubstr("pass --tls-cert and --tls-key"));
  EXPECT_EQ(Ctl("status", {"--tls-ca", certs_.ca, "--token", kOperatorToken}, &out), 7) << out;
  EXPECT_THAT(out, HasSubstr("pass --tls-cert and --tls-key"));
  // And with everything right it answers.
  EXPECT_EQ(Ctl("migrations", With(Tls(), {"--token", kOperatorToken}), &out), 0) << out;
}

// The deployment examples (deploy/k8s/overlays/tls, deploy/compose/
// compose.tls.yaml) configure everything through SCHEMAGATE_* variables, and
// the probes and health checks run schemagatectl inside the coordinator's
// container, where SCHEMAGATE_TLS_CERT/KEY are the coordinator's own
// certificate: schemagatectl then presents it as its client certificate.
TEST_F(SecurityTest, TheDeploymentExamplesVariablesWork) {
  StartSecureCoordinator();
  const std::map<std::string, std::string> coordinator_container = {
      {"SCHEMAGATE_COORDINATOR", coordinator_->address()},
      {"SCHEMAGATE_TLS_CERT", certs_.server_cert},
      {"SCHEMAGATE_TLS_KEY", certs_.server_key},
      {"SCHEMAGATE_TLS_CLIENT_CA", certs_.ca},
      {"SCHEMAGATE_OPERATOR_TOKEN_FILE", operator_file_},
      {"SCHEMAGATE_AGENT_TOKEN_FILE", agent_file_},
      {"SCHEMAGATE_TLS_CA", certs_.ca},
      {"SCHEMAGATE_TOKEN_FILE", operator_file_}};
  std::string out;
  // The app container: its own client certificate and the agent token. It
  // waits until the set is applied, so that status below is CURRENT.
  const std::map<std::string, std::string> app_container = {
      {"SCHEMAGATE_COORDINATOR", coordinator_->address()},
      {"SCHEMAGATE_TLS_CA", certs_.ca},
      {"SCHEMAGATE_TLS_CERT", certs_.client_cert},
      {"SCHEMAGATE_TLS_KEY", certs_.client_key},
      {"SCHEMAGATE_TOKEN_FILE", agent_file_}};
  EXPECT_EQ(RunBinary({BinaryPath("schemagate-agent"), "wait", "--timeout", "20s"}, &out,
                      absl::Seconds(30), app_container),
            0)
      << out;
  EXPECT_EQ(RunBinary({BinaryPath("schemagate-agent"), "check"}, &out, absl::Seconds(30),
                      app_container),
            0)
      << out;
  // The exec probe and the Compose/Docker health check.
  EXPECT_EQ(RunBinary({BinaryPath("schemagatectl"), "health", "--timeout", "3s"}, &out,
                      absl::Seconds(30), coordinator_container),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("SERVING"));
  // kubectl exec deploy/schemagate -- schemagatectl status
  EXPECT_EQ(RunBinary({BinaryPath("schemagatectl"), "status"}, &out, absl::Seconds(30),
                      coordinator_container),
            0)
      << out;
  EXPECT_EQ(RunBinary({BinaryPath("schemagatectl"), "status"}, &out, absl::Seconds(30),
                      app_container),
            6)
      << out;
  EXPECT_THAT(out, HasSubstr("PERMISSION_DENIED"));
}

TEST_F(SecurityTest, NoTokenOrDatabasePasswordAppearsInAnyOutput) {
  StartSecureCoordinator();
  std::string out;
  Agent("wait", With(Tls(), {"--token", kAgentToken, "--migrations-dir", migrations_.path()}),
        &out);
  Agent("check", With(Tls(), {"--token", kWrongToken}), &out);
  Agent("check", {"--token", kAgentToken}, &out);
  Agent("check",
        With(Tls(), {"--token", kWrongToken, "--fallback-database-url", WithPassword(db_->url())}),
        &out);
  Ctl("status", With(Tls(), {"--token", kOperatorToken}), &out);
  Ctl("status", With(Tls(), {"--token", kAgentToken}), &out);
  Ctl("status", With(Tls(), {"--token", kWrongToken, "-o", "json"}), &out);
  Ctl("apply", With(Tls(), {"--token", kOperatorToken}), &out);
  Ctl("history", With(Tls(), {"--token", kOperatorToken}), &out);
  Ctl("watch", With(Tls(), {"--token", kOperatorToken, "--after", "1", "--for", "1s"}), &out);
  // Rotation: SIGHUP re-reads the token files.
  secrets_.Write("agent.token", "ag-rotated-7c6b5a4d3e2f1a0b9c8d7e6f\n");
  coordinator_->process().Signal(SIGHUP);
  ASSERT_TRUE(coordinator_->process().WaitForLog("token files re-read", absl::Seconds(10)));
  EXPECT_EQ(Agent("check", With(Tls(), {"--token", "ag-rotated-7c6b5a4d3e2f1a0b9c8d7e6f"}), &out),
            0)
      << out;
  EXPECT_EQ(Agent("check", With(Tls(), {"--token", kAgentToken}), &out), 6) << out;
  outputs_.push_back(coordinator_->process().Log());
  for (const std::string& output : outputs_) {
    for (const char* secret : {kOperatorToken, kAgentToken, kWrongToken, kDatabasePassword,
                               "ag-rotated-7c6b5a4d3e2f1a0b9c8d7e6f"}) {
      // The command lines we ran carry tokens; only what the binaries wrote counts.
      const std::string written = output.substr(output.find('\n') + 1);
      EXPECT_THAT(written, Not(HasSubstr(secret))) << output;
    }
  }
}

TEST_F(SecurityTest, UnusableAccessFlagsRefuseToStart) {
  const std::string empty = secrets_.Write("empty.token", "\n");
  struct Case {
    std::vector<std::string> flags;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{"--operator-token-file", empty}, "--operator-token-file: " + empty + " is empty"},
      {{"--operator-token-file", secrets_.path() + "/missing"}, "cannot read"},
      {{"--agent-token-file", agent_file_}, "needs --operator-token-file"},
      {{"--operator-token-file", operator_file_, "--agent-token-file", operator_file_},
       "the same token"},
      {{"--tls-cert", certs_.server_cert}, "--tls-cert and --tls-key go together"},
      {{"--tls-client-ca", certs_.ca}, "needs --tls-cert"},
      {{"--tls-cert", operator_file_, "--tls-key", certs_.server_key}, "not a PEM file"},
      // PEM, but the wrong thing: a usage error (2), not a failed listen (1).
      {{"--tls-cert", certs_.server_cert, "--tls-key", certs_.client_key},
       "--tls-key " + certs_.client_key + " does not match the certificate of --tls-cert"},
      {{"--tls-cert", certs_.server_key, "--tls-key", certs_.server_key},
       "--tls-cert: " + certs_.server_key + " holds no PEM certificate"},
      {{"--tls-cert", certs_.server_cert, "--tls-key", certs_.server_cert},
       "--tls-key: " + certs_.server_cert + " holds no unencrypted PEM private key"},
      {{"--tls-cert", certs_.server_cert, "--tls-key", certs_.server_key, "--tls-client-ca",
        certs_.client_key},
       "--tls-client-ca: " + certs_.client_key + " holds no PEM certificate"},
      {{"--operator-token-file", secrets_.path()}, secrets_.path() + " is a directory"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {BinaryPath("schemagated"), "--database-url",
                                     WithPassword(db_->url()), "--migrations-dir",
                                     migrations_.path(), "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    std::string out;
    EXPECT_EQ(RunBinary(argv, &out, absl::Seconds(20)), 2) << Joined(argv) << "\n" << out;
    EXPECT_THAT(out, HasSubstr(c.expected));
    EXPECT_THAT(out, HasSubstr("refusing to start"));
    EXPECT_THAT(out, Not(HasSubstr(kOperatorToken)));
    EXPECT_THAT(out, Not(HasSubstr(kDatabasePassword)));
  }
}

// Opens a TCP connection that never says anything (a slowloris client).
int IdleConnection(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int PortOf(const std::string& address) { return std::stoi(address.substr(address.rfind(':') + 1)); }

// A follow=true Wait stream held open until the test cancels it.
class HeldStream {
 public:
  HeldStream(v1::AgentService::Stub* stub) {
    SetDeadline(&context_, absl::Seconds(120));
    v1::WaitRequest request;
    request.set_follow(true);
    reader_ = stub->Wait(&context_, request);
    got_first_ = reader_->Read(&first_);
    if (!got_first_) status_ = reader_->Finish();
  }
  ~HeldStream() {
    if (!got_first_) return;
    context_.TryCancel();
    v1::Readiness r;
    while (reader_->Read(&r)) {
    }
    reader_->Finish();
  }
  bool open() const { return got_first_; }
  const grpc::Status& status() const { return status_; }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::Readiness>> reader_;
  v1::Readiness first_;
  bool got_first_ = false;
  grpc::Status status_;
};

class FloodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    db_ = std::make_unique<TestDatabase>();
    testing::WriteTrivialMigrations(migrations_, 1, 3);
    operator_file_ = secrets_.Write("operator.token", kOperatorToken);
    agent_file_ = secrets_.Write("agent.token", kAgentToken);
    // Tokens without TLS on loopback: allowed (see docs/security.md).
    coordinator_ = std::make_unique<CoordinatorProcess>(
        db_->url(), migrations_.path(),
        std::vector<std::string>{"--operator-token-file", operator_file_, "--agent-token-file",
                                 agent_file_, "--max-streams-per-client",
                                 std::to_string(kStreamLimit)});
    ClientSecurity agent;
    agent.token = kAgentToken;
    agent_stub_ = v1::AgentService::NewStub(NewCoordinatorChannel(coordinator_->address(), agent));
  }

  static constexpr int kStreamLimit = 8;
  std::unique_ptr<TestDatabase> db_;
  TempDir migrations_, secrets_;
  std::string operator_file_, agent_file_;
  std::unique_ptr<CoordinatorProcess> coordinator_;
  std::unique_ptr<v1::AgentService::Stub> agent_stub_;
};

// Each malformed request, with what its INVALID_ARGUMENT message must say.
std::vector<std::pair<v1::CheckRequest, std::string>> MalformedChecks() {
  std::vector<std::pair<v1::CheckRequest, std::string>> out;
  v1::CheckRequest r;
  r.mutable_target()->set_app(std::string(1000, 'a'));
  out.emplace_back(r, "target.app");
  r.Clear();
  r.set_instance_id("pod with spaces");
  out.emplace_back(r, "instance_id");
  r.Clear();
  r.mutable_target()->set_known_version(-3);
  out.emplace_back(r, "must not be negative");
  r.Clear();
  r.mutable_target()->set_known_version(2);
  r.mutable_target()->set_required_version(5);
  out.emplace_back(r, "R can never exceed K");
  r.Clear();
  (*r.mutable_target()->mutable_checksums())[1] = "not-a-checksum";
  out.emplace_back(r, "64 lower-case hex digits");
  return out;
}

TEST_F(FloodTest, BadAndIdleClientsDoNotStopAGoodAgent) {
  const int kBadCalls = EnvInt("SCHEMAGATE_FLOOD_BAD_CALLS", 200);
  const int kIdleConnections = EnvInt("SCHEMAGATE_FLOOD_IDLE_CONNECTIONS", 50);
  std::vector<int> idle;
  for (int i = 0; i < kIdleConnections; ++i) {
    const int fd = IdleConnection(PortOf(coordinator_->address()));
    ASSERT_GE(fd, 0);
    idle.push_back(fd);
  }
  const auto malformed = MalformedChecks();
  std::atomic<int> invalid{0}, unauthenticated{0}, other{0};
  std::atomic<bool> wrong_message{false};
  std::vector<std::thread> flood;
  ClientSecurity no_token;
  auto anonymous =
      v1::AgentService::NewStub(NewCoordinatorChannel(coordinator_->address(), no_token));
  for (int t = 0; t < 4; ++t) {
    flood.emplace_back([&, t] {
      for (int i = t; i < kBadCalls; i += 4) {
        const auto& [request, expected] = malformed[i % malformed.size()];
        grpc::ClientContext context;
        SetDeadline(&context, absl::Seconds(10));
        v1::Readiness response;
        // Every fifth call also lacks its token.
        const bool anonymous_call = i % 5 == 0;
        grpc::Status status = (anonymous_call ? anonymous : agent_stub_)
                                  ->Check(&context, request, &response);
        if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT && !anonymous_call) {
          ++invalid;
          if (status.error_message().find(expected) == std::string::npos) wrong_message = true;
        } else if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED && anonymous_call) {
          ++unauthenticated;
        } else {
          ++other;
        }
      }
    });
  }
  // Meanwhile a good agent waits for READY and starts its app.
  std::string out;
  const absl::Time started = absl::Now();
  const int code = RunBinary({BinaryPath("schemagate-agent"), "wait", "--coordinator",
                              coordinator_->address(), "--timeout", "60s", "--migrations-dir",
                              migrations_.path(), "--token", kAgentToken, "--", "true"},
                             &out, absl::Seconds(90));
  const absl::Duration agent_took = absl::Now() - started;
  for (std::thread& t : flood) t.join();
  const absl::Duration flood_took = absl::Now() - started;
  // Reported, not asserted (no timed assertions): the good agent's time.
  std::printf("good agent READY and its app done after %s, beside %d bad calls (all answered "
              "after %s) and %d idle connections\n",
              absl::FormatDuration(agent_took).c_str(), kBadCalls,
              absl::FormatDuration(flood_took).c_str(), kIdleConnections);
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(invalid + unauthenticated, kBadCalls);
  EXPECT_EQ(unauthenticated, (kBadCalls + 4) / 5);
  EXPECT_EQ(other, 0);
  EXPECT_FALSE(wrong_message);
  // A request above --max-request-bytes is cut off by gRPC itself.
  v1::CheckRequest huge;
  huge.mutable_target()->set_app(std::string(2 << 20, 'a'));
  grpc::ClientContext context;
  SetDeadline(&context, absl::Seconds(10));
  v1::Readiness response;
  EXPECT_EQ(agent_stub_->Check(&context, huge, &response).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  for (int fd : idle) close(fd);
  EXPECT_TRUE(coordinator_->process().running());
}

TEST_F(FloodTest, StreamsOverThePerClientLimitAreResourceExhausted) {
  std::vector<std::unique_ptr<HeldStream>> held;
  for (int i = 0; i < kStreamLimit; ++i) {
    held.push_back(std::make_unique<HeldStream>(agent_stub_.get()));
    ASSERT_TRUE(held.back()->open()) << i << ": " << held.back()->status().error_message();
  }
  HeldStream over(agent_stub_.get());
  EXPECT_FALSE(over.open());
  EXPECT_EQ(over.status().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(over.status().error_message(), HasSubstr("--max-streams-per-client"));
  // Attach counts too.
  EXPECT_EQ(AttachStatus(agent_stub_.get()).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // WatchEvents counts too (the operator token).
  ClientSecurity operator_security;
  operator_security.token = kOperatorToken;
  auto operator_stub = v1::OperatorService::NewStub(
      NewCoordinatorChannel(coordinator_->address(), operator_security));
  {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(10));
    auto reader = operator_stub->WatchEvents(&context, v1::WatchEventsRequest());
    v1::Event event;
    EXPECT_FALSE(reader->Read(&event));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  // Unary calls are not streams: still answered.
  {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(10));
    v1::Readiness response;
    EXPECT_TRUE(agent_stub_->Check(&context, v1::CheckRequest(), &response).ok());
  }
  // Closing one frees its slot (the server sees the cancel shortly after).
  held.pop_back();
  bool reopened = false;
  for (int attempt = 0; attempt < 100 && !reopened; ++attempt) {
    auto again = std::make_unique<HeldStream>(agent_stub_.get());
    reopened = again->open();
    if (reopened) {
      held.push_back(std::move(again));
    } else {
      EXPECT_EQ(again->status().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
  EXPECT_TRUE(reopened);
}

}  // namespace
}  // namespace schemagate
