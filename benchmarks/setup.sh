#!/usr/bin/env bash
# Install the benchmark-only dependencies; the tests never need any of them.
#
#   bash benchmarks/setup.sh
#
# * nginx and wrk from apt (sudo is used when not root). The benchmark runs
#   its own nginx on a high port with a generated config; it does not use
#   the system service.
# * uvloop, httpx, aiometer, pycurl (and sniffio) from benchmarks/requirements.txt,
#   with pip, into the current environment: activate the project's venv first,
#   or set PYTHON=/path/to/venv/bin/python.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
    if command -v python >/dev/null 2>&1; then python=python; else python=python3; fi
fi

if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk
else
    echo "setup.sh: apt-get not found; install nginx and wrk yourself" \
        "(without nginx, run.py uses the aiohttp fallback server; without" \
        "wrk, it skips the wrk rows)" >&2
fi

"$python" -m pip install -r "$here/requirements.txt"
echo "setup.sh: done ($("$python" --version), $(command -v nginx || echo 'no nginx'), $(command -v wrk || echo 'no wrk'))"
