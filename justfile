# Aurore's entry points. `just run` and `just test` work on a fresh machine.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Run the service on http://127.0.0.1:8080, console at /ui (finds or starts PostgreSQL; release build).
run *ARGS:
    scripts/ui.sh build --soft
    DATABASE_URL="$(scripts/database.sh app)" cargo run --release --bin aurore -- {{ARGS}}

# Build the console into ui/dist when its sources changed (needs Node >= 20.19 and npm).
ui:
    scripts/ui.sh build

# Every test: unit, tidy, store and HTTP suites against a real PostgreSQL, then the
# console's unit tests and its browser tests in Chromium.
test *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    export AURORE_TEST_DATABASE_URL="$(scripts/database.sh admin)"
    echo "tests use PostgreSQL at $AURORE_TEST_DATABASE_URL"
    # The console suite reads the built console.
    scripts/ui.sh build
    # The shipper suites drive the real Python and JavaScript clients.
    scripts/clients.sh
    # The process-level tests start the real binary.
    cargo build --bin aurore
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --workspace --no-fail-fast {{ARGS}}
    else
        cargo test --workspace --no-fail-fast {{ARGS}}
    fi
    scripts/ui.sh test

# Formatting and clippy, warnings denied.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# What CI runs.
ci: lint check-deploy test

# Criterion micro-benchmarks of the hot path (parse/validate/enrich, journal append).
bench *ARGS:
    cargo bench -p aurore-domain -p aurore-journal --bench ingest --bench append -- {{ARGS}}

# Fuzz TARGET (`event`: the event parser and validator; `filter`: the q= language) for SECONDS (libFuzzer; installs cargo-fuzz if missing).
fuzz SECONDS="60" TARGET="event":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
    mkdir -p fuzz/corpus/{{TARGET}} fuzz/seeds/{{TARGET}}
    cd fuzz
    # cargo-fuzz passes nightly-only sanitizer flags; the pinned stable toolchain accepts them this way.
    RUSTC_BOOTSTRAP=1 cargo fuzz run {{TARGET}} corpus/{{TARGET}} seeds/{{TARGET}} -- -max_total_time={{SECONDS}}

# The console with ROWS rows loaded (cursor pages through "Load older"): frame times while
# scrolling and the JS heap, in Chromium against the debug binary.
ui-bench ROWS="100000":
    #!/usr/bin/env bash
    set -euo pipefail
    export AURORE_TEST_DATABASE_URL="$(scripts/database.sh admin)"
    scripts/ui.sh build
    cargo build --bin aurore
    cd ui && ROWS={{ROWS}} npm run --silent bench

# Raw COPY baseline, then Aurore under loadgen scenarios; prints a table (SECONDS per scenario).
loadtest SECONDS="20":
    scripts/loadtest.sh {{SECONDS}}

# The four ratios to this machine's limits (bare HTTP, no journal, raw COPY, cursor page), side by side.
perf SECONDS="15":
    scripts/perf.sh {{SECONDS}}

# The cost of the NATS hop: arrays of 1,000 through `--role ingest` + `--role writer` ÷ `--role all`.
bench-queue SECONDS="20":
    scripts/bench-queue.sh {{SECONDS}}

# OTLP/HTTP logs in protobuf ÷ `POST /events` arrays, batches of N, rounds alternating on one service.
bench-protocols SECONDS="3" N="1000" ROUNDS="3":
    scripts/bench-protocols.sh {{SECONDS}} {{N}} {{ROUNDS}}

# Accepted events/s with a realistic privacy rule set ÷ without rules, arrays of N, one run.
bench-privacy SECONDS="3" N="1000" ROUNDS="3":
    scripts/bench-privacy.sh {{SECONDS}} {{N}} {{ROUNDS}}

# What erasing one person costs over ROWS events in DAYS daily partitions.
bench-erase ROWS="10000000" DAYS="30":
    scripts/bench-erase.sh {{ROWS}} {{DAYS}}

# Drive a running Aurore: e.g. `just loadgen run --mode array --batch 1000 --verify`.
loadgen *ARGS:
    cargo run --release --bin aurore-loadgen -- {{ARGS}}

# Print the URL of the PostgreSQL server in use (starting a local one if needed).
db:
    @scripts/database.sh app

# Apply migrations to the database `just run` uses.
migrate:
    DATABASE_URL="$(scripts/database.sh app)" cargo run --release --bin aurore -- migrate

# Stop the project-local PostgreSQL cluster, if one was started.
db-stop:
    #!/usr/bin/env bash
    set -euo pipefail
    [ -f .pgdata/postmaster.pid ] || { echo "no local cluster running"; exit 0; }
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$bin/pg_ctl" -D .pgdata stop; else "$bin/pg_ctl" -D .pgdata stop; fi

# Build the container image (needs Docker).
image:
    docker build -f deploy/Dockerfile -t aurore:latest .

# Check deploy/ without a cluster or container engine: kustomize base and overlay, Prometheus
# config, alert rules and their unit tests, dashboards.
check-deploy:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v kubectl >/dev/null 2>&1; then
        echo "kubectl not found: install it with 'apt-get install kubernetes-client' (Debian's package)" >&2
        exit 1
    fi
    for kustomization in deploy/k8s/base deploy/k8s/overlays/autoscale deploy/k8s/overlays/queue; do
        kubectl kustomize "$kustomization" >/dev/null
        echo "$kustomization: kustomize renders"
    done
    if ! command -v promtool >/dev/null 2>&1; then
        echo "promtool not found: install it with 'apt-get install prometheus' (Debian's package)" >&2
        exit 1
    fi
    # prometheus-kubernetes.yml is left out: Debian's promtool is built without Kubernetes
    # discovery and refuses it (tests/it/deploy.rs checks its labels instead).
    promtool check config deploy/prometheus/prometheus.yml
    promtool check rules deploy/prometheus/alerts.yml
    promtool test rules deploy/prometheus/alerts.test.yml
    for dashboard in deploy/grafana/dashboards/*.json; do
        python3 -m json.tool "$dashboard" >/dev/null
        echo "$dashboard: valid JSON"
    done
