#!/usr/bin/env bash
# Events stored in the database at DATABASE_URL, from the hourly rollup that each batch's
# transaction keeps exact. Benchmarks poll this while they wait for the writers: a
# count(*) every 0.2 s would scan millions of rows and steal the CPU it is measuring.
# Usage: scripts/stored-events.sh DATABASE_URL
set -euo pipefail
psql "$1" -Atc "SELECT coalesce(sum(events), 0) FROM event_counts"
