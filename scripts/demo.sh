#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole story on a synthetic county.
# Extra arguments go to scripts/demo.py, e.g. --people 100000.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
