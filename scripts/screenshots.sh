#!/usr/bin/env bash
# Take the README's screenshots (docs/screenshots/*.png) of the real app under Xvfb.
# Needs: xvfb and the xcb libraries of ../shared/ENVIRONMENT.md (installed here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs="xvfb xauth libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-render-util0 libxcb-image0 libxcb-randr0 libxcb-xinerama0"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
    as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi
[ -x .venv/bin/python ] || { python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'; }
export QT_QPA_PLATFORM=xcb
exec xvfb-run -a -s "-screen 0 1440x900x24" .venv/bin/python scripts/screenshots.py
