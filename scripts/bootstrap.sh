#!/usr/bin/env bash
# Set up everything `make demo` and `make test` need, skipping what is already there:
# system packages (through apt when run as root), the .venv, and the Python packages.
# Usage: scripts/bootstrap.sh [demo|test]
set -euo pipefail
cd "$(dirname "$0")/.."
purpose=${1:-test}
PY=${PYTHON:-python3}

if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "gridtwin needs Python >= 3.11 as '$PY' (set PYTHON=/path/to/python3.11)." >&2
  exit 1
fi

# System packages. mosquitto: the broker (tests start extra instances of it); docker-compose: the
# compose-file check; chromium, chromium-driver: browser tests; libegl1, libgl1-mesa-dri, libosmesa6:
# offscreen 3D rendering; fonts-wqy-microhei: Chinese labels in rendered PNGs.
pkgs_test="mosquitto mosquitto-clients docker-compose chromium chromium-driver libegl1 libgl1-mesa-dri libosmesa6 fonts-wqy-microhei"
pkgs_demo="mosquitto mosquitto-clients libegl1 libgl1-mesa-dri libosmesa6 fonts-wqy-microhei"
if [ "$purpose" = demo ]; then pkgs=$pkgs_demo; else pkgs=$pkgs_test; fi
missing=""
if command -v dpkg-query >/dev/null 2>&1; then
  for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
else
  for c in mosquitto docker-compose chromium; do
    case " $pkgs " in *" $c "*) command -v "$c" >/dev/null 2>&1 || missing="$missing $c";; esac
  done
fi
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing system packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  elif [ "$purpose" = demo ]; then
    echo "bootstrap: note: missing system packages:$missing (install with: sudo apt-get install$missing)." >&2
    echo "bootstrap: the demo goes on with embedded fallbacks (amqtt broker when mosquitto is missing)." >&2
  else
    echo "bootstrap: missing system packages:$missing" >&2
    echo "bootstrap: install them with: sudo apt-get install$missing   (or run make as root)" >&2
    exit 1
  fi
fi

# Python environment: re-install only when pyproject.toml changed.
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.gridtwin-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c 'import gateway.cli, psycopg, paho.mqtt.client' \
    || { echo "bootstrap: Python packages failed to install (see pip output above)" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
