// How schemagatectl shows responses: aligned text tables for people,
// protobuf JSON for scripts.
#ifndef SCHEMAGATE_CTL_RENDER_H_
#define SCHEMAGATE_CTL_RENDER_H_

#include <string>
#include <vector>

#include "google/protobuf/message.h"
#include "schemagate/v1/schemagate.pb.h"

namespace schemagate {

// Protobuf JSON (field names as in the .proto). `pretty` indents.
std::string ToJson(const google::protobuf::Message& message, bool pretty);

// Rows of cells printed with aligned columns; the first row is the header.
std::string FormatTable(const std::vector<std::vector<std::string>>& rows);

// "12ms", "3.2s", "4m05s".
std::string FormatDuration(const google::protobuf::Duration& d);
// "2026-11-24 05:30:38Z" or "-".
std::string FormatTimestamp(const google::protobuf::Timestamp& t);

std::string RenderStatus(const v1::Status& status);
std::string RenderMigrations(const v1::ListMigrationsResponse& response);
std::string RenderPlan(const v1::PlanResponse& plan);
std::string RenderHistory(const v1::HistoryResponse& history);
std::string RenderInstances(const v1::ListInstancesResponse& response);
// validate: the problems, then the live-schema diff if the schema drifted.
std::string RenderValidate(const v1::ValidateResponse& response);
// One line for a live event (watch).
std::string RenderEvent(const v1::Event& event);
// One line for a progress message (plain output).
std::string RenderProgress(const v1::RunProgress& progress);

// Short names of the enums ("CURRENT", "applied", …).
std::string SetStateName(v1::SetState state);
std::string MigrationStateName(v1::MigrationState state);
std::string RepeatableStateName(v1::RepeatableState state);

}  // namespace schemagate

#endif  // SCHEMAGATE_CTL_RENDER_H_
