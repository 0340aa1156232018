#include "tests/support/tcp_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace schemagate::testing {

struct TcpProxy::Pair {
  int client = -1;
  int server = -1;
};

namespace {

// Writes all of `data`; false if the peer is gone.
bool WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

int ConnectTo(const std::string& host, int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (fd < 0 || inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1 ||
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

void CloseBoth(int a, int b) {
  for (int fd : {a, b}) {
    if (fd < 0) continue;
    shutdown(fd, SHUT_RDWR);
    close(fd);
  }
}

}  // namespace

TcpProxy::TcpProxy(std::string target_host, int target_port)
    : target_host_(std::move(target_host)), target_port_(target_port) {
  if (pipe2(wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) std::abort();
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listen_fd_, 64) != 0 ||
      getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(listen_fd_);
    listen_fd_ = -1;
    return;
  }
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { Loop(); });
}

TcpProxy::~TcpProxy() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  Wake();
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  close(wake_pipe_[0]);
  close(wake_pipe_[1]);
}

void TcpProxy::Wake() {
  const char byte = 1;
  (void)!write(wake_pipe_[1], &byte, 1);
}

void TcpProxy::Cut() {
  absl::MutexLock lock(&mu_);
  cut_ = true;
  const int wanted = ++cuts_requested_;
  Wake();
  auto done = [this, wanted]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return cuts_done_ >= wanted || stopping_;
  };
  mu_.Await(absl::Condition(&done));
}

void TcpProxy::Resume() {
  absl::MutexLock lock(&mu_);
  cut_ = false;
}

int TcpProxy::relayed() const {
  absl::MutexLock lock(&mu_);
  return relayed_;
}

void TcpProxy::Loop() {
  std::vector<Pair> pairs;
  std::vector<char> buffer(64 * 1024);
  while (true) {
    bool cut = false;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      cut = cut_;
      if (cuts_done_ < cuts_requested_) {
        for (const Pair& p : pairs) CloseBoth(p.client, p.server);
        pairs.clear();
        cuts_done_ = cuts_requested_;
      }
    }
    std::vector<pollfd> fds = {{wake_pipe_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    for (const Pair& p : pairs) {
      fds.push_back({p.client, POLLIN, 0});
      fds.push_back({p.server, POLLIN, 0});
    }
    if (poll(fds.data(), fds.size(), 1000) < 0 && errno != EINTR) break;
    if (fds[0].revents & POLLIN) {
      char drain[64];
      while (read(wake_pipe_[0], drain, sizeof(drain)) > 0) {
      }
    }
    if (fds[1].revents & POLLIN) {
      const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client >= 0) {
        const int server = cut ? -1 : ConnectTo(target_host_, target_port_);
        if (server < 0) {
          CloseBoth(client, -1);
        } else {
          const int one = 1;
          setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
          absl::MutexLock lock(&mu_);
          ++relayed_;
          // Appended after this poll round's entries: polled from the next round.
          pairs.push_back({client, server});
        }
      }
    }
    std::vector<Pair> alive;
    for (size_t i = 0; i + 2 < fds.size(); i += 2) {
      const Pair& p = pairs[i / 2];
      bool ok = true;
      for (const auto& [from, to, revents] :
           {std::make_tuple(p.client, p.server, fds[i + 2].revents),
            std::make_tuple(p.server, p.client, fds[i + 3].revents)}) {
        if (!ok || (revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const ssize_t n = recv(from, buffer.data(), buffer.size(), 0);
        ok = n > 0 && WriteAll(to, buffer.data(), static_cast<size_t>(n));
      }
      if (ok) {
        alive.push_back(p);
      } else {
        CloseBoth(p.client, p.server);
      }
    }
    for (size_t i = (fds.size() - 2) / 2; i < pairs.size(); ++i) alive.push_back(pairs[i]);
    pairs = std::move(alive);
  }
  for (const Pair& p : pairs) CloseBoth(p.client, p.server);
  absl::MutexLock lock(&mu_);
  cuts_done_ = cuts_requested_;
}

}  // namespace schemagate::testing
