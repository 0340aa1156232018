// A TCP forwarder for fault-injection tests: listens on 127.0.0.1 (any free
// port) and relays every accepted connection to a target, until the test
// cuts them all at once.
//
// Thread-safe: one relay thread owns every socket; Cut() and Resume() may be
// called from any thread and return once the relay thread has done them.
#ifndef SCHEMAGATE_TESTS_SUPPORT_TCP_PROXY_H_
#define SCHEMAGATE_TESTS_SUPPORT_TCP_PROXY_H_

#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace schemagate::testing {

class TcpProxy {
 public:
  // Forwards to target_host:target_port (a numeric IPv4 address).
  TcpProxy(std::string target_host, int target_port);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  // The loopback port it listens on (0 if it could not listen).
  int port() const { return port_; }

  // Closes both sides of every relayed connection, as a network cut or a
  // killed load balancer does: the client sees its connection reset and the
  // server sees its client gone. Until Resume(), new connections are
  // accepted and closed at once (the database looks down).
  void Cut();
  // Relays new connections again.
  void Resume();
  // Connections accepted and relayed so far.
  int relayed() const;

 private:
  struct Pair;
  void Loop();
  void Wake();

  const std::string target_host_;
  const int target_port_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  int port_ = 0;
  mutable absl::Mutex mu_;
  bool cut_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Incremented by Cut(); the relay thread copies it once every connection
  // of that cut is closed.
  int cuts_requested_ ABSL_GUARDED_BY(mu_) = 0;
  int cuts_done_ ABSL_GUARDED_BY(mu_) = 0;
  int relayed_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace schemagate::testing

#endif  // SCHEMAGATE_TESTS_SUPPORT_TCP_PROXY_H_
