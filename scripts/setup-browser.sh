#!/usr/bin/env bash
# Install Debian's chromium (used headless by the report test through playwright,
# which never downloads a browser of its own) and a CJK font (the zh report's
# screenshot). Idempotent; skipped when present.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && fc-list :lang=zh 2>/dev/null | grep -q .; then exit 0; fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
log=/tmp/aidlink-apt.log
if ! $SUDO apt-get install -y -q chromium fonts-wqy-microhei >"$log" 2>&1; then
  $SUDO apt-get update -q >>"$log" 2>&1 || true
  $SUDO apt-get install -y -q chromium fonts-wqy-microhei >>"$log" 2>&1 || { tail -n 20 "$log" >&2; exit 1; }
fi
