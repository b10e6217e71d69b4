#!/usr/bin/env bash
# The cost of the NATS hop: durable events/s of JSON arrays of 1,000 through one ingest and
# one writer process over a JetStream stream ÷ the same load on one `--role all` process,
# measured in one run, alternating (all, split, all, split) so drift between the halves of
# the run cancels out. Starts its own nats-server (JetStream on temporary storage) on a free
# port; release builds; wrk (installed from Debian if missing).
# For the capacity model it also prints, for the split rounds, events stored per CPU-second
# of each process: the ingest, the writer, nats-server and PostgreSQL (all its processes).
# Usage: scripts/bench-queue.sh [SECONDS per measurement, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
port=${AURORE_BENCH_PORT:-18110}
writer_port=$((port + 1))
nats_port=$((port + 2))
if ! command -v wrk >/dev/null 2>&1; then
    echo "installing wrk" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
nats=$(command -v nats-server || echo /usr/sbin/nats-server)
[ -x "$nats" ] || { echo "nats-server not found: apt-get install nats-server" >&2; exit 1; }
admin=$(scripts/database.sh admin)
server=${admin%/*}
tag="queue_bench_$$"
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
    for db in $(psql "$admin" -Atc "SELECT datname FROM pg_database WHERE datname LIKE '%$tag%'"); do
        psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

cargo build --release --quiet --bin aurore
aurore=${AURORE_BINARY:-target/release/aurore}

"$nats" -js -a 127.0.0.1 -p "$nats_port" -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)
until grep -q "Server is ready" "$work/nats.log"; do sleep 0.1; done

# Runs Aurore with a role and extra environment on $database, in the background.
aurore() {
    local role=$1 http=$2
    shift 2
    env DATABASE_URL="$server/$database" AURORE__SERVER__PORT="$http" AURORE__JOURNAL__DIR="$work/journal" \
        AURORE__RATE_LIMIT__INGEST_PER_SECOND=0 RUST_LOG=warn "$@" "$aurore" serve --role "$role" &
    pids+=($!)
    until curl -fs "http://127.0.0.1:$http/health/ready" >/dev/null; do sleep 0.1; done
}
stop_all() {
    while [ ${#pids[@]} -gt 1 ]; do kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; done
}
fresh_database() {
    database="aurore_${tag}_$RANDOM"
    psql "$admin" -qc "CREATE DATABASE $database"
    rm -rf "$work/journal"
    DATABASE_URL="$server/$database" RUST_LOG=warn "$aurore" migrate >/dev/null
}
# Durable events/s: rows stored ÷ time from the first request until the last row landed,
# once the count has stood still for 3 s (a checkpoint can pause commits for a moment).
durable() {
    local start finished still=0 previous=-1 rows
    start=$(date +%s.%N)
    wrk -t1 -c8 -d"${seconds}s" -s scripts/wrk/post_batch.lua "http://127.0.0.1:$port/events" -- 1000 hop >/dev/null
    while [ "$still" -lt 15 ]; do
        rows=$(scripts/stored-events.sh "$server/$database")
        if [ "$rows" != "$previous" ]; then
            finished=$(date +%s.%N) still=0 previous=$rows
        else
            still=$((still + 1))
        fi
        sleep 0.2
    done
    python3 -c "print(round($rows / ($finished - $start)))"
}

# CPU-seconds (user + system) the processes have used so far.
cpu_seconds() {
    local ticks=0 pid
    for pid in "$@"; do
        [ -r "/proc/$pid/stat" ] || continue
        # Fields 14 and 15 after the command name, which may hold spaces.
        ticks=$((ticks + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
    done
    python3 -c "print($ticks / $(getconf CLK_TCK))"
}
single=()
split=()
per_cpu=()
for round in 1 2; do
    fresh_database
    aurore all "$port"
    single+=("$(durable)")
    stop_all
    fresh_database
    stream="HOP_${round}_$$"
    queue=(AURORE__QUEUE__KIND=nats AURORE__QUEUE__NATS_URL="nats://127.0.0.1:$nats_port" AURORE__QUEUE__STREAM="$stream")
    aurore writer "$writer_port" "${queue[@]}"
    aurore ingest "$port" "${queue[@]}"
    roles=("${pids[-2]}" "${pids[-1]}" "${pids[0]}")
    before=($(cpu_seconds "${roles[0]}") $(cpu_seconds "${roles[1]}") $(cpu_seconds "${roles[2]}") $(cpu_seconds $(pgrep -x postgres)))
    before_rows=$(scripts/stored-events.sh "$server/$database")
    split+=("$(durable)")
    after=($(cpu_seconds "${roles[0]}") $(cpu_seconds "${roles[1]}") $(cpu_seconds "${roles[2]}") $(cpu_seconds $(pgrep -x postgres)))
    rows=$(( $(scripts/stored-events.sh "$server/$database") - before_rows ))
    for i in 0 1 2 3; do per_cpu+=("$(python3 -c "print(round($rows / max(${after[$i]} - ${before[$i]}, 0.01)))")"); done
    stop_all
done

python3 - "${single[@]}" "${split[@]}" "${per_cpu[@]}" <<'PY'
import sys
single, split = [int(x) for x in sys.argv[1:3]], [int(x) for x in sys.argv[3:5]]
per_cpu = [int(x) for x in sys.argv[5:13]]
print(f"arrays of 1,000, durable events/s, {len(single)} rounds each, alternating")
print(f"  --role all (local queue)           {' '.join(f'{x:>9,}' for x in single)}")
print(f"  --role ingest + --role writer, NATS {' '.join(f'{x:>9,}' for x in split)}")
print(f"hop ratio (split ÷ all, means): {sum(split) / sum(single):.2f} (target ≥ 0.60)")
print("events stored per CPU-second, split rounds:")
for i, name in enumerate(["writer", "ingest", "nats-server", "postgresql"]):
    print(f"  {name:<12} {' '.join(f'{per_cpu[round * 4 + i]:>9,}' for round in range(2))}")
PY
