#!/usr/bin/env bash
# Run chatq's benchmark suite from the repository root (see bench/__main__.py).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m bench "$@"
