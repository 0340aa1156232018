#include "coordinator/base/conninfo.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace schemagate {
namespace {

// Redacts `user:password@` after each "://".
std::string RedactUrlPasswords(absl::string_view text) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t scheme = text.find("://", pos);
    if (scheme == absl::string_view::npos) break;
    size_t auth_start = scheme + 3;
    // The authority ends at the first '/', '?', '#', or whitespace.
    size_t auth_end = auth_start;
    while (auth_end < text.size() && text[auth_end] != '/' &&
           text[auth_end] != '?' && text[auth_end] != '#' &&
           !absl::ascii_isspace(static_cast<unsigned char>(text[auth_end]))) {
      ++auth_end;
    }
    absl::string_view authority = text.substr(auth_start, auth_end - auth_start);
    size_t at = authority.rfind('@');
    size_t colon = authority.find(':');
    out.append(text.data() + pos, auth_start - pos);
    if (at != absl::string_view::npos && colon != absl::string_view::npos &&
        colon < at) {
      absl::StrAppend(&out, authority.substr(0, colon + 1), "***",
                      authority.substr(at));
    } else {
      out.append(authority.data(), authority.size());
    }
    pos = auth_end;
  }
  out.append(text.data() + pos, text.size() - pos);
  return out;
}

// Redacts the value after every `password=` (case-insensitive), whether it
// is a key/value pair or a URL parameter, quoted or not.
std::string RedactPasswordPairs(absl::string_view text) {
  static constexpr absl::string_view kKey = "password";
  std::string out;
  size_t pos = 0;
  const std::string lower = absl::AsciiStrToLower(text);
  while (pos < text.size()) {
    size_t hit = lower.find(std::string(kKey), pos);
    if (hit == std::string::npos) break;
    size_t after = hit + kKey.size();
    size_t eq = after;
    while (eq < text.size() && text[eq] == ' ') ++eq;
    if (eq >= text.size() || text[eq] != '=') {
      out.append(text.data() + pos, after - pos);
      pos = after;
      continue;
    }
    size_t value = eq + 1;
    while (value < text.size() && text[value] == ' ') ++value;
    size_t end = value;
    if (value < text.size() && text[value] == '\'') {
      end = value + 1;
      while (end < text.size() && text[end] != '\'') {
        if (text[end] == '\\') ++end;
        ++end;
      }
      if (end < text.size()) ++end;
    } else {
      while (end < text.size() && text[end] != '&' && text[end] != '"' &&
             !absl::ascii_isspace(static_cast<unsigned char>(text[end]))) {
        ++end;
      }
    }
    out.append(text.data() + pos, value - pos);
    out += "***";
    pos = std::min(end, text.size());
  }
  out.append(text.data() + pos, text.size() - pos);
  return out;
}

bool IsUrl(absl::string_view conninfo) {
  return absl::StartsWith(conninfo, "postgres://") ||
         absl::StartsWith(conninfo, "postgresql://");
}

}  // namespace

std::string RedactSecrets(absl::string_view text) {
  return RedactPasswordPairs(RedactUrlPasswords(text));
}

// Keepalive probes after 5 s idle, every 2 s, 3 unanswered ones end the
// connection; unacknowledged data ends it after 10 s.
constexpr char kKeepaliveIdle[] = "5";
constexpr char kKeepaliveInterval[] = "2";
constexpr char kKeepaliveCount[] = "3";
constexpr char kTcpUserTimeoutMs[] = "10000";
// How often PostgreSQL checks, during a statement, that the client is still there.
constexpr char kClientCheckInterval[] = "2s";

std::string WithKeepalives(absl::string_view conninfo) {
  static const std::vector<std::pair<absl::string_view, absl::string_view>>
      kSettings = {{"keepalives", "1"},
                   {"keepalives_idle", kKeepaliveIdle},
                   {"keepalives_interval", kKeepaliveInterval},
                   {"keepalives_count", kKeepaliveCount},
                   {"tcp_user_timeout", kTcpUserTimeoutMs},
                   {"connect_timeout", "10"}};
  std::string out(conninfo);
  const bool url = IsUrl(conninfo);
  for (const auto& [key, value] : kSettings) {
    if (absl::StrContains(conninfo, absl::StrCat(key, "="))) continue;
    if (url) {
      out += (out.find('?') == std::string::npos) ? '?' : '&';
      absl::StrAppend(&out, key, "=", value);
    } else {
      absl::StrAppend(&out, out.empty() ? "" : " ", key, "=", value);
    }
  }
  return out;
}

std::string ServerKeepaliveSql() {
  return absl::StrCat("SET tcp_keepalives_idle = ", kKeepaliveIdle,
                      "; SET tcp_keepalives_interval = ", kKeepaliveInterval,
                      "; SET tcp_keepalives_count = ", kKeepaliveCount,
                      "; SET tcp_user_timeout = ", kTcpUserTimeoutMs,
                      // PostgreSQL 14+: also check for a closed client socket
                      // while a statement runs, instead of only when it ends.
                      "; SELECT set_config('client_connection_check_interval', '",
                      kClientCheckInterval, "', false) WHERE current_setting('server_version_num')"
                      "::int >= 140000");
}

}  // namespace schemagate
