#!/usr/bin/env bash
# Set up (scripts/setup.sh, scripts/setup-browser.sh), lint with ruff, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-browser.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
