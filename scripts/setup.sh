#!/usr/bin/env bash
# Create .venv and install safeguard with every integration and the test tools.
# torch is pinned through constraints.txt (torch==2.13.0, the CPU build on the
# reference machine); the package itself only asks for torch>=2.6.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[all,dev]"
echo "safeguard installed in .venv ($(.venv/bin/python --version))"
