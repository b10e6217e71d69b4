# Sourced by the benchmark scripts (with $port set): a throwaway database and journal,
# removed on exit, and `start_service [VAR=value ...]`, which runs the release binary
# against them with those variables and returns once it is ready.
admin=$(scripts/database.sh admin)
server=${admin%/*}
database="aurore_bench_$$"
psql "$admin" -qc "CREATE DATABASE $database"
journal=$(mktemp -d)
pid=
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$journal"; psql "$admin" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)"' EXIT

binary=${AURORE_BINARY:-}
if [ -z "$binary" ]; then
    cargo build --release --quiet --bin aurore
    binary=${CARGO_TARGET_DIR:-target}/release/aurore
fi

start_service() {
    env DATABASE_URL="$server/$database" AURORE__SERVER__PORT="$port" AURORE__JOURNAL__DIR="$journal" \
        RUST_LOG=warn "$@" "$binary" &
    pid=$!
    until curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null; do sleep 0.1; done
}
