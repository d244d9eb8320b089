#!/usr/bin/env bash
# Instructions a server spends on 30 POSTs of one 1,000-record batch (the bench's records),
# counted by callgrind: repeatable where wall-clock figures are not. Compare two builds:
#   crates/bench/scripts/callgrind-ingest.sh target/release/aitrail
#   crates/bench/scripts/callgrind-ingest.sh /tmp/before-target/release/aitrail
# Needs valgrind, curl and python3. Prints callgrind's "Collected" total.
set -euo pipefail
bin=$(realpath "$1")
port=${PORT:-18099}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/batch.json" <<'PY'
import json, sys
P = ["openai", "anthropic", "azure", "cohere", "mistral"]
M = ["gpt-4o", "claude-3-sonnet", "gpt-35-turbo", "command-r", "mistral-large",
     "gpt-4o-mini", "claude-3-haiku", "gpt-4-turbo", "command-r-plus", "mistral-small"]
records = [{
    "tenant_id": f"tenant-{i % 4}", "user_id": f"user-{i % 1000}", "agent_id": f"agent-{i % 50}",
    "session_id": f"sess-{i // 10}", "channel": "api",
    "feature_code": ["workspace", "trustee", "search"][i % 3], "operation_type": "chat",
    "model_provider": P[i % 5], "model_name": M[i % 10],
    "temperature": f"{(i * 7) % 2}.{(i * 13) % 10}",
    "prompt": "Summarise the attached contract for a client " * 3,
    "response": "The contract says the following things in short " * 4,
    "input": {"record_count": 12}, "cost_amount": "0.0042", "cost_currency": "USD",
} for i in range(1000)]
json.dump(records, open(sys.argv[1], "w"))
PY
key=$("$bin" --data-dir "$work/data" keys create --role admin 2>/dev/null)
valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
  "$bin" --data-dir "$work/data" serve --listen "127.0.0.1:$port" --rate-limit 0 \
  2>"$work/valgrind.log" &
server=$!
for _ in $(seq 1 240); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break
  sleep 0.5
done
for _ in $(seq 1 30); do
  curl -sf -o /dev/null -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    --data-binary @"$work/batch.json" "http://127.0.0.1:$port/v1/records"
done
kill -TERM "$server"
wait "$server"
grep Collected "$work/valgrind.log"
