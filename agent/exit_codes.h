// Exit codes of schemagate-agent (DESIGN.md "Interfaces"); schemagatectl uses
// the same numbers where they mean the same thing.
#ifndef SCHEMAGATE_AGENT_EXIT_CODES_H_
#define SCHEMAGATE_AGENT_EXIT_CODES_H_

namespace schemagate {

inline constexpr int kExitReady = 0;
// schemagatectl: the operation did not succeed / the schema is not current.
inline constexpr int kExitNotDone = 1;
// Also: the agent's instance id is held by another live agent process
// (a configuration error: give each agent its own --instance-id).
inline constexpr int kExitUsage = 2;
inline constexpr int kExitTimedOut = 3;
inline constexpr int kExitIncompatible = 4;
inline constexpr int kExitFailed = 5;
inline constexpr int kExitUnauthorised = 6;
inline constexpr int kExitUnreachable = 7;

}  // namespace schemagate

#endif  // SCHEMAGATE_AGENT_EXIT_CODES_H_
