// The TLS and token flags every client command line has (schemagate-agent,
// schemagatectl), with their SCHEMAGATE_* environment variables.
#ifndef SCHEMAGATE_AGENT_SECURITY_FLAGS_H_
#define SCHEMAGATE_AGENT_SECURITY_FLAGS_H_

#include "CLI/CLI.hpp"
#include "agent/channel.h"

namespace schemagate {

inline void AddClientSecurityFlags(CLI::App* app, ClientSecurityFlags* flags) {
  app->add_option("--tls-ca", flags->tls_ca,
                  "Use TLS; trust coordinators whose certificate this PEM CA bundle signed")
      ->envname("SCHEMAGATE_TLS_CA");
  app->add_option("--tls-cert", flags->tls_cert,
                  "Use TLS with this PEM client certificate (mutual TLS); needs --tls-key")
      ->envname("SCHEMAGATE_TLS_CERT");
  app->add_option("--tls-key", flags->tls_key, "PEM private key of --tls-cert")
      ->envname("SCHEMAGATE_TLS_KEY");
  app->add_option("--token", flags->token,
                  "Bearer token for the coordinator (prefer SCHEMAGATE_TOKEN or --token-file: "
                  "a command line is visible to other users)")
      ->envname("SCHEMAGATE_TOKEN");
  app->add_option("--token-file", flags->token_file, "File holding the bearer token")
      ->envname("SCHEMAGATE_TOKEN_FILE");
}

}  // namespace schemagate

#endif  // SCHEMAGATE_AGENT_SECURITY_FLAGS_H_
