#!/usr/bin/env bash
# Regenerates corpus/request_fuzzer/ from the text-format requests below:
# byte 0 = the request kind, byte 1 = the coordinator state bits (see
# request_fuzzer.cc), then the message encoded by protoc.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto="$here/../../proto"
out="$here/corpus/request_fuzzer"
mkdir -p "$out"

seed() {  # seed NAME KIND STATE MESSAGE TEXT
  local name=$1 kind=$2 state=$3 message=$4 text=$5
  {
    printf "\\x$(printf %02x "$kind")\\x$(printf %02x "$state")"
    printf '%s' "$text" | protoc --proto_path="$proto" --encode="schemagate.v1.$message" \
      "$proto/schemagate/v1/schemagate.proto"
  } >"$out/$name"
}

sum=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
seed check_own_set        0 0   CheckRequest  'target { app: "api" app_version: "1.7.0" } instance_id: "pod-1"'
seed check_known          0 64  CheckRequest  "target { app: \"api\" known_version: 4 required_version: 2 checksums { key: 1 value: \"$sum\" } }"
seed check_bad_checksum   0 0   CheckRequest  'target { app: "api" checksums { key: -1 value: "XYZ" } }'
seed check_r_above_k      0 0   CheckRequest  'target { known_version: 1 required_version: 9 }'
seed check_huge           0 255 CheckRequest  'target { known_version: 9223372036854775807 required_version: 9223372036854775807 }'
seed wait_follow          1 18  WaitRequest   'target { app: "api" required_version: 3 } instance_id: "pod 2" follow: true'
seed wait_database_down   1 1   WaitRequest   'target { app: "api" }'
seed attach_first         2 4   AttachRequest 'target { app: "api" app_version: "1.0" known_version: 2 } instance_id: "pod-1"'
seed attach_goodbye       2 0   AttachRequest 'goodbye: true'
seed plan_head            3 0   PlanRequest   ''
seed plan_target          3 136 PlanRequest   'target_version: 3'
seed plan_rollback        3 0   PlanRequest   'rollback: true target_version: -5'
seed apply_dry_run        4 32  ApplyRequest  'target_version: 4 dry_run: true actor: "ops"'
seed rollback             5 0   RollbackRequest 'target_version: 1 dry_run: true'
seed repair               6 0   RepairRequest 'action: RESUME version: 2 actor: "ops"'
seed baseline             7 0   BaselineRequest 'version: 3'
seed history              8 0   HistoryRequest 'limit: 10000 version: 2'
seed watch_events         9 0   WatchEventsRequest 'after_event_id: 42'
seed readiness           10 0   Readiness     'state: BLOCKED message: "waits" applied_version: 2 blocking_version: 3 coordinator_id: "c1"'
