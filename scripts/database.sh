#!/usr/bin/env bash
# Prints the URL of a PostgreSQL server to use, finding or starting one:
#   1. DATABASE_URL, when set;
#   2. a server already answering on 127.0.0.1:5432;
#   3. a project-local cluster in .pgdata/ (port 54329), made from PostgreSQL binaries
#      on this machine and kept between runs.
# Usage: scripts/database.sh admin   URL of the server's `postgres` database (tests create theirs)
#        scripts/database.sh app     URL of the `aurore` database, created if missing
set -euo pipefail

mode=${1:-admin}
root=$(cd "$(dirname "$0")/.." && pwd)
data="$root/.pgdata"
local_port=54329

say() { echo "database: $*" >&2; }

bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return; fi
    if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
    return 1
}

answers() { # host port
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$1" -p "$2"
    else
        (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
    fi
}

# Runs a command as the owner of the local cluster: PostgreSQL refuses to run as root.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$owner" -- "$@"
    else
        "$@"
    fi
}

start_local_cluster() {
    local bin
    if ! bin=$(bindir); then
        say "no PostgreSQL found: nothing answers on 127.0.0.1:5432 and no server binaries are installed."
        say "Either set DATABASE_URL, install PostgreSQL (apt-get install postgresql),"
        say "or start one with: docker compose -f deploy/docker-compose.yml up -d postgres"
        exit 1
    fi
    owner=$(id -un)
    if [ "$(id -u)" -eq 0 ]; then
        owner=postgres
        id -u "$owner" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$owner"
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
        say "creating a local cluster in $data"
        mkdir -p "$data"
        chown "$owner" "$data"
        as_owner "$bin/initdb" --pgdata="$data" --username=postgres --auth=trust --encoding=UTF8 --no-instructions >/dev/null
    fi
    if ! answers 127.0.0.1 "$local_port"; then
        say "starting the local cluster on port $local_port (log: $data/server.log)"
        as_owner "$bin/pg_ctl" --pgdata="$data" --log="$data/server.log" --wait --silent \
            -o "-p $local_port -k $data -c listen_addresses=127.0.0.1 -c fsync=on" start
    fi
}

if [ -n "${DATABASE_URL:-}" ]; then
    echo "$DATABASE_URL"
    exit 0
fi

if answers 127.0.0.1 5432; then
    server="postgres://postgres@127.0.0.1:5432"
else
    start_local_cluster
    server="postgres://postgres@127.0.0.1:$local_port"
fi

case "$mode" in
    admin) echo "$server/postgres" ;;
    app)
        psql=$(command -v psql || { bin=$(bindir) && echo "$bin/psql"; })
        if ! "$psql" "$server/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = 'aurore'" | grep -q 1; then
            say "creating database aurore"
            "$psql" "$server/postgres" -qc "CREATE DATABASE aurore"
        fi
        echo "$server/aurore"
        ;;
    *) say "unknown mode $mode (admin or app)"; exit 2 ;;
esac
