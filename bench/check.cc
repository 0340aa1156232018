#include "bench/check.h"

#include <signal.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/channel.h"
#include "coordinator/base/status_macros.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "schemagate/v1/schemagate.grpc.pb.h"

namespace schemagate::bench {
namespace {

class EchoAgentService;

// A bare Wait stream: the answer as PENDING at once, then, when released,
// the answer (READY) and the end, in one batch as the coordinator sends it.
class BareWait final : public grpc::ServerWriteReactor<v1::Readiness> {
 public:
  BareWait(EchoAgentService* service, const v1::Readiness& answer);
  void Release() {
    absl::MutexLock lock(&mu_);
    if (released_) return;
    released_ = true;
    if (!writing_) StartWriteAndFinish(&ready_, grpc::WriteOptions(), grpc::Status::OK);
  }
  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      Finish(grpc::Status::CANCELLED);
    } else if (released_) {
      StartWriteAndFinish(&ready_, grpc::WriteOptions(), grpc::Status::OK);
    }
  }
  void OnDone() override;

 private:
  EchoAgentService* const service_;
  v1::Readiness pending_, ready_;
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = true;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
};

// The bare service: the coordinator's Check, and Wait streams released all
// at once by a Check for app "bench-release" (the fan-out's floor: what
// Debian's gRPC costs to tell N streams, without the coordinator).
class EchoAgentService final : public v1::AgentService::CallbackService {
 public:
  explicit EchoAgentService(v1::Readiness answer) : answer_(std::move(answer)) {}
  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const v1::CheckRequest* request,
                                  v1::Readiness* response) override {
    if (request->target().app() == "bench-release") ReleaseAll();
    *response = answer_;
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerWriteReactor<v1::Readiness>* Wait(grpc::CallbackServerContext*,
                                                const v1::WaitRequest*) override {
    auto* stream = new BareWait(this, answer_);
    absl::MutexLock lock(&mu_);
    waiting_.insert(stream);
    return stream;
  }
  void Forget(BareWait* stream) {
    absl::MutexLock lock(&mu_);
    waiting_.erase(stream);
  }

 private:
  // Tells every stream on this thread, as the coordinator's Publish does.
  void ReleaseAll() {
    std::vector<BareWait*> streams;
    {
      absl::MutexLock lock(&mu_);
      streams.assign(waiting_.begin(), waiting_.end());
    }
    for (BareWait* stream : streams) stream->Release();
  }

  const v1::Readiness answer_;
  absl::Mutex mu_;
  absl::flat_hash_set<BareWait*> waiting_ ABSL_GUARDED_BY(mu_);
};

BareWait::BareWait(EchoAgentService* service, const v1::Readiness& answer)
    : service_(service), pending_(answer), ready_(answer) {
  pending_.set_state(v1::PENDING);
  ready_.set_state(v1::READY);
  StartWrite(&pending_);
}

void BareWait::OnDone() {
  service_->Forget(this);
  delete this;
}

std::atomic<bool> g_echo_stop{false};

// `in_flight` callback Check calls, each started again as soon as it ends,
// for `duration` after a short warm-up.
class ClosedLoop {
 public:
  ClosedLoop(v1::AgentService::Stub* stub, int in_flight) : stub_(stub), slots_(in_flight) {}

  struct Figures {
    double qps = 0;
    Percentiles latency;
    int errors = 0;
  };

  Figures Run(absl::Duration warmup, absl::Duration duration) {
    measure_from_ = Clock::now() + std::chrono::microseconds(absl::ToInt64Microseconds(warmup));
    stop_at_ = measure_from_ + std::chrono::microseconds(absl::ToInt64Microseconds(duration));
    active_ = static_cast<int>(slots_.size());
    for (Slot& slot : slots_) Start(&slot);
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](int* active) { return *active == 0; }, &active_));
    }
    Figures figures;
    std::vector<double> all;
    for (Slot& slot : slots_) {
      all.insert(all.end(), slot.latencies.begin(), slot.latencies.end());
      figures.errors += slot.errors;
    }
    figures.qps = all.size() / absl::ToDoubleSeconds(duration);
    figures.latency = Summarise(std::move(all));
    return figures;
  }

 private:
  struct Slot {
    std::unique_ptr<grpc::ClientContext> context;
    v1::CheckRequest request;
    v1::Readiness response;
    Clock::time_point started;
    std::vector<double> latencies;
    int errors = 0;
  };

  void Start(Slot* slot) {
    slot->context = std::make_unique<grpc::ClientContext>();
    SetDeadline(slot->context.get(), absl::Seconds(10));
    slot->request.mutable_target()->set_app("bench");
    slot->started = Clock::now();
    stub_->async()->Check(slot->context.get(), &slot->request, &slot->response,
                          [this, slot](grpc::Status status) { Finished(slot, status); });
  }

  void Finished(Slot* slot, const grpc::Status& status) {
    const Clock::time_point now = Clock::now();
    if (!status.ok()) {
      ++slot->errors;
    } else if (slot->started >= measure_from_ && now <= stop_at_) {
      slot->latencies.push_back(MillisBetween(slot->started, now));
    }
    if (now < stop_at_) {
      Start(slot);
      return;
    }
    absl::MutexLock lock(&mu_);
    --active_;
  }

  v1::AgentService::Stub* const stub_;
  std::vector<Slot> slots_;
  Clock::time_point measure_from_, stop_at_;
  absl::Mutex mu_;
  int active_ ABSL_GUARDED_BY(mu_) = 0;
};

std::unique_ptr<v1::AgentService::Stub> NewStub(const std::string& address) {
  return v1::AgentService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

}  // namespace

int ServeEcho(const std::string& listen, const std::string& response_hex) {
  v1::Readiness answer;
  if (!answer.ParseFromString(absl::HexStringToBytes(response_hex))) {
    std::fprintf(stderr, "echo-server: --response is not a serialized Readiness\n");
    return 2;
  }
  EchoAgentService service(answer);
  // The same settings as coordinator/server/server.cc (CoordinatorServer::Start),
  // with the defaults of ServerOptions.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(4 << 20);
  builder.SetMaxSendMessageSize(4 << 20);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, 5 * 60 * 1000);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, 30000);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "echo-server: cannot listen on %s\n", listen.c_str());
    return 1;
  }
  // The parent reads the port (of --listen HOST:0) from this line.
  std::printf("echo-server serving on %s:%d\n", listen.substr(0, listen.rfind(':')).c_str(),
              port);
  std::fflush(stdout);
  signal(SIGTERM, [](int) { g_echo_stop = true; });
  while (!g_echo_stop) absl::SleepFor(absl::Milliseconds(50));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}

absl::StatusOr<std::vector<CheckRow>> RunCheck(const CheckOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<ScratchDatabase> db,
                   ScratchDatabase::Create(options.admin_url, "sg_bench_check"));
  ScratchDir migrations;
  for (int v = 1; v <= 10; ++v) {
    migrations.Write(absl::StrCat(v, "_t", v, ".up.sql"),
                     absl::StrCat("CREATE TABLE check_t", v, " (id int);\n"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<CoordinatorProcess> coordinator,
                   CoordinatorProcess::Start(db->url(), migrations.path(), {"--apply", "manual"},
                                             absl::StrCat(options.log_dir, "/check.log")));
  RETURN_IF_ERROR(ApplyThrough(coordinator->address(), 0));

  // The coordinator's own answer, for the echo server to send back.
  auto coordinator_stub = NewStub(coordinator->address());
  // (The run has ended; the coordinator's view follows its NOTIFY a moment later.)
  v1::Readiness answer;
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (true) {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(5));
    v1::CheckRequest request;
    request.mutable_target()->set_app("bench");
    const grpc::Status status = coordinator_stub->Check(&context, request, &answer);
    if (!status.ok()) return absl::InternalError(status.error_message());
    if (answer.state() == v1::READY) break;
    if (absl::Now() >= until) {
      return absl::InternalError(absl::StrCat("Check answered ", answer.state(), ", not READY"));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  const std::string echo_log = absl::StrCat(options.log_dir, "/echo.log");
  Child echo({SelfPath(), "echo-server", "--listen", "127.0.0.1:0",
              "--response", absl::BytesToHexString(answer.SerializeAsString())},
             echo_log);
  ASSIGN_OR_RETURN(const std::string echo_address,
                   ServingAddress(echo_log, "echo-server serving on 127.0.0.1:",
                                  absl::Seconds(30)));
  RETURN_IF_ERROR(WaitUntilServing(echo_address, absl::Seconds(30)));
  auto echo_stub = NewStub(echo_address);

  std::vector<CheckRow> rows;
  for (int in_flight : options.in_flight) {
    CheckRow row;
    row.in_flight = in_flight;
    for (int round = 0; round < options.rounds; ++round) {
      for (bool is_echo : {false, true}) {
        const pid_t pid = is_echo ? echo.pid() : coordinator->pid();
        const double cpu_before = CpuSeconds(pid);
        ClosedLoop loop(is_echo ? echo_stub.get() : coordinator_stub.get(), in_flight);
        const ClosedLoop::Figures f = loop.Run(absl::Milliseconds(300), options.duration);
        const double cpu = CpuSeconds(pid) - cpu_before;
        if (f.errors > 0) {
          return absl::InternalError(absl::StrCat(f.errors, " Check calls failed (",
                                                  is_echo ? "echo" : "coordinator", ")"));
        }
        double& qps = is_echo ? row.echo_qps : row.coordinator_qps;
        if (f.qps > qps) {
          qps = f.qps;
          (is_echo ? row.echo_p99_ms : row.coordinator_p99_ms) = f.latency.p99;
          (is_echo ? row.echo_cpu_s : row.coordinator_cpu_s) = cpu;
        }
      }
    }
    rows.push_back(row);
  }
  echo.Stop();
  coordinator->Stop();
  return rows;
}

}  // namespace schemagate::bench
