#!/usr/bin/env bash
# Run chatq's benchmark suite from the repository root (see bench/__main__.py),
# installing chatq and what the suite needs first when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c 'import requests, psutil, tasks.producer' 2>/dev/null \
    || python -m pip install -q -e '.[bench]'
exec python -m bench "$@"
