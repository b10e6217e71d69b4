#!/usr/bin/env bash
# Accepted events/s through OTLP/HTTP logs (protobuf, batches of N) against POST /events
# (JSON arrays of N), in one run on one service: rounds alternate the two so drift on a
# noisy machine falls on both, and each starts once the writers have stored everything
# before it, so neither is measured against a full journal. Prints each round and the
# ratio of the totals.
# Usage: scripts/bench-protocols.sh [SECONDS_PER_ROUND=3] [N=1000] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-3}
batch=${2:-1000}
rounds=${3:-3}
port=${AURORE_BENCH_PORT:-18080}
. scripts/bench-service.sh
cargo build --release --quiet --bin aurore-loadgen
# One client drives all the load, so its per-client ingest limit is off.
start_service AURORE__RATE_LIMIT__INGEST_PER_SECOND=0

rate() {
    target/release/aurore-loadgen run --url "http://127.0.0.1:$port" --mode "$1" --batch "$batch" \
        --concurrency 8 --duration "$seconds" --quiet --json \
        | python3 -c 'import json, sys; r = json.load(sys.stdin); print(r["accepted_events_per_second"], r["statuses"])'
}
declare -A total=([array]=0 [otlp]=0)
for round in $(seq "$rounds"); do
    for mode in array otlp; do
        scripts/drained.sh "$server/$database"
        read -r events_per_second statuses < <(rate "$mode")
        printf 'round %s  %-5s %12.0f events/s  %s\n' "$round" "$mode" "$events_per_second" "$statuses"
        total[$mode]=$(python3 -c "print(${total[$mode]} + $events_per_second)")
    done
done
python3 -c "print(f'OTLP protobuf / POST /events arrays of $batch: {${total[otlp]} / ${total[array]}:.2f}')"
