#!/usr/bin/env bash
# Accepted events/s of POST /events (JSON arrays of N events carrying personal data) with a
# realistic privacy rule set (3 hashed fields, 1 generalised, message scanning for emails,
# IP addresses and card numbers) against the same service without rules, in one run: two
# services, one of each, rounds alternating between them (and which goes first) so drift on
# a noisy machine falls on both, each round starting once both services' writers stored everything before it.
# Prints each round and the ratios of the totals (rules ÷ none): of accepted events/s, and
# of stored events/s (from the round's start until its writers stored everything).
# Usage: scripts/bench-privacy.sh [SECONDS_PER_ROUND=3] [N=1000] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-3}
batch=${2:-1000}
rounds=${3:-3}
admin=$(scripts/database.sh admin)
server=${admin%/*}
cargo build --release --quiet --bin aurore --bin aurore-loadgen
declare -A port=([none]=18081 [rules]=18082) pid=() journal=()
cleanup() {
    for kind in none rules; do
        kill "${pid[$kind]:-}" 2>/dev/null && wait "${pid[$kind]}" 2>/dev/null
        rm -rf "${journal[$kind]:-}"
        psql "$admin" -qc "DROP DATABASE IF EXISTS aurore_bench_${kind}_$$ WITH (FORCE)"
    done
}
trap cleanup EXIT
rules='[{"field": "metadata.user_id", "action": "hash"},
        {"field": "metadata.email", "action": "hash"},
        {"field": "metadata.document", "action": "hash"},
        {"field": "metadata.ip_address", "action": "generalise"}]'
for kind in none rules; do
    psql "$admin" -qc "CREATE DATABASE aurore_bench_${kind}_$$"
    journal[$kind]=$(mktemp -d)
    privacy=()
    if [ "$kind" = rules ]; then
        privacy=(AURORE__PRIVACY__RULES="$rules" AURORE__PRIVACY__SCAN_MESSAGE=email,ip,card
            AURORE__PRIVACY__HMAC_KEY=bench-key-of-at-least-thirty-two-bytes-long)
    fi
    # One client drives all the load, so its per-client ingest limit is off.
    env DATABASE_URL="$server/aurore_bench_${kind}_$$" AURORE__SERVER__PORT="${port[$kind]}" \
        AURORE__JOURNAL__DIR="${journal[$kind]}" AURORE__RATE_LIMIT__INGEST_PER_SECOND=0 RUST_LOG=warn \
        "${privacy[@]}" target/release/aurore &
    pid[$kind]=$!
    until curl -fs "http://127.0.0.1:${port[$kind]}/health/ready" >/dev/null; do sleep 0.1; done
done
if [ "$(curl -fs "http://127.0.0.1:${port[rules]}/privacy" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["rules"]))')" != 4 ]; then
    echo "the rules service does not report its 4 rules" >&2
    exit 1
fi

rate() {
    target/release/aurore-loadgen run --url "http://127.0.0.1:${port[$1]}" --mode array --batch "$batch" \
        --personal-data --concurrency 8 --duration "$seconds" --quiet --json \
        | python3 -c 'import json, sys; r = json.load(sys.stdin); print(r["accepted_events_per_second"], r["statuses"])'
}
drained() {
    scripts/drained.sh "$server/aurore_bench_${1}_$$"
}
declare -A total=([none]=0 [rules]=0) durable=([none]=0 [rules]=0)
for round in $(seq "$rounds"); do
    # Which goes first alternates too: a round right after the other's is not like one after idle.
    order="none rules"
    [ $((round % 2)) -eq 0 ] && order="rules none"
    for kind in $order; do
        # Both: the other service's writers must not be storing its backlog meanwhile.
        drained none
        drained rules
        before=$(scripts/stored-events.sh "$server/aurore_bench_${kind}_$$")
        started=$(date +%s.%N)
        read -r events_per_second statuses < <(rate "$kind")
        drained "$kind"
        stored=$(python3 -c "print(($(scripts/stored-events.sh "$server/aurore_bench_${kind}_$$") - $before) / ($(date +%s.%N) - $started))")
        printf 'round %s  %-5s %9.0f accepted events/s %9.0f stored events/s  %s\n' \
            "$round" "$kind" "$events_per_second" "$stored" "$statuses"
        total[$kind]=$(python3 -c "print(${total[$kind]} + $events_per_second)")
        durable[$kind]=$(python3 -c "print(${durable[$kind]} + $stored)")
    done
done
python3 -c "print(f'privacy rules / no rules, arrays of $batch: accepted {${total[rules]} / ${total[none]}:.2f}, stored {${durable[rules]} / ${durable[none]}:.2f}')"
