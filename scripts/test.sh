#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: creates .venv, installs plantcdn
# with its test extras, runs ruff and pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
.venv/bin/ruff check plantcdn tests twisted
exec .venv/bin/python -m pytest "$@"
