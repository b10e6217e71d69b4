#!/usr/bin/env bash
# Returns once the events stored in the database at DATABASE_URL stop growing for half a
# second: the writers have stored everything accepted before. Benchmarks start each round
# after it, so no round is measured against another's backlog.
# Usage: scripts/drained.sh DATABASE_URL
set -euo pipefail
cd "$(dirname "$0")/.."
previous=-1
rows=$(scripts/stored-events.sh "$1")
while [ "$rows" != "$previous" ]; do
    sleep 0.5
    previous=$rows
    rows=$(scripts/stored-events.sh "$1")
done
