#!/usr/bin/env bash
# Installs the real shipper clients the shipper suites drive: Python packages into
# .venv-clients (and the 8.x Elasticsearch client into .venv-clients-es8), JavaScript
# packages into tests/clients/node_modules. Does nothing when all are already in place for
# the current requirements and lock file.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=tests/clients

python_clients() {
    local venv=$1 requirements=$2 wanted
    wanted=$(sha256sum < "$requirements" | cut -c1-16)
    if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$wanted" ]; then
        echo "installing the Python clients of $requirements into $venv"
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
        echo "$wanted" > "$venv/.installed"
    fi
}
python_clients .venv-clients "$clients/requirements.txt"
python_clients .venv-clients-es8 "$clients/requirements-es8.txt"

wanted=$(sha256sum < "$clients/package-lock.json" | cut -c1-16)
if [ "$(cat "$clients/node_modules/.installed" 2>/dev/null)" != "$wanted" ]; then
    echo "installing the JavaScript shipper clients into $clients/node_modules"
    (cd "$clients" && npm ci --silent --no-audit --no-fund)
    echo "$wanted" > "$clients/node_modules/.installed"
fi
