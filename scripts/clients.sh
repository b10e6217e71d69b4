#!/usr/bin/env bash
# Installs the real shipper clients the shipper suites drive: Python packages into
# .venv-clients, JavaScript packages into tests/clients/node_modules. Does nothing when both
# are already in place for the current requirements and lock file.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=tests/clients
venv=.venv-clients

wanted=$(cat "$clients/requirements.txt" | sha256sum | cut -c1-16)
if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$wanted" ]; then
    echo "installing the Python shipper clients into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$clients/requirements.txt"
    echo "$wanted" > "$venv/.installed"
fi

wanted=$(cat "$clients/package-lock.json" | sha256sum | cut -c1-16)
if [ "$(cat "$clients/node_modules/.installed" 2>/dev/null)" != "$wanted" ]; then
    echo "installing the JavaScript shipper clients into $clients/node_modules"
    (cd "$clients" && npm ci --silent --no-audit --no-fund)
    echo "$wanted" > "$clients/node_modules/.installed"
fi
