#!/usr/bin/env bash
# The console's build and tests (ui/). Usage:
#   scripts/ui.sh build          build ui/dist when its sources changed (Node 20.19+, npm)
#   scripts/ui.sh build --soft   the same, but only warn when Node is missing: the binary
#                                then serves a page saying how to build the console
#   scripts/ui.sh test           unit tests (vitest), then browser tests in Chromium
#                                against target/debug/aurore (installs Debian's chromium
#                                when missing and running as root)
set -euo pipefail
cd "$(dirname "$0")/../ui"

say() { echo "ui: $*" >&2; }

need_node() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        say "Node.js and npm are needed to build the console (Node >= 20.19)"
        return 1
    fi
    if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
        say "Node $(node --version) is too old: Vite needs >= 20.19"
        return 1
    fi
}

install() {
    # npm ci only when the lock file changed since the last install.
    if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
        npm ci --no-audit --no-fund --loglevel=error
    fi
}

stale() {
    [ ! -f dist/index.html ] && return 0
    [ -n "$(find src index.html package-lock.json vite.config.ts tsconfig.json -newer dist/index.html -print -quit)" ]
}

build() {
    if ! need_node; then
        [ "${1:-}" = "--soft" ] && { say "serving the placeholder page instead of the console"; return 0; }
        return 1
    fi
    install
    if stale; then
        npm run --silent build
    else
        say "dist is up to date"
    fi
}

chromium_path() {
    for candidate in "${CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
        [ -n "$candidate" ] && [ -x "$candidate" ] && { echo "$candidate"; return; }
    done
    return 1
}

browser_tests() {
    if ! chromium_path >/dev/null; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            say "installing Debian's chromium"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
        else
            say "Chromium is needed: apt-get install chromium (or set CHROMIUM)"
            return 1
        fi
    fi
    CHROMIUM=$(chromium_path) npm run --silent e2e
}

case "${1:-build}" in
    build) build "${2:-}" ;;
    test)
        build
        npm run --silent test
        browser_tests
        ;;
    *) say "unknown command $1"; exit 2 ;;
esac
