#!/usr/bin/env bash
# Create .venv and install aidlink with the pinned versions in constraints.txt.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -c 'import sys; assert sys.version_info >= (3, 11), "aidlink needs Python >= 3.11"'
  "$PY" -m venv .venv
fi
EXTRAS="${AIDLINK_EXTRAS-hub,spark,dev}"  # AIDLINK_EXTRAS= (empty): the agency side only
stamp=".venv/.aidlink-installed"
want="$(cat constraints.txt pyproject.toml | sha256sum | cut -c1-16) $EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log=.venv/pip-install.log
  pipi() { .venv/bin/python -m pip install -q "$@" >>"$log" 2>&1 || { tail -n 30 "$log" >&2; exit 1; }; }
  pipi --upgrade "pip>=24"
  target="."
  [ -n "$EXTRAS" ] && target=".[${EXTRAS}]"
  pipi -c constraints.txt -e "$target"
  .venv/bin/python -c "import linkage, agency_kit, synthetic" >/dev/null
  echo "$want" > "$stamp"
fi
