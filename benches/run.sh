#!/usr/bin/env bash
# One-command benchmark: tiering against a DuckDB script and a Python polars
# script on the same generated data. Usage:
#   benches/run.sh [--sizes 1000000,10000000] [--huge] [--reps 3]
# Installs the peers from PyPI into benches/.venv on first use; writes
# benches/results/<date>.json and .md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tiering-target}"
(cd "$root" && cargo build --release --quiet)
if [ ! -x "$here/.venv/bin/python" ]; then
  python3 -m venv "$here/.venv"
  "$here/.venv/bin/pip" install --quiet duckdb polars
fi
exec "$here/.venv/bin/python" "$here/bench.py" --tiering "$CARGO_TARGET_DIR/release/tiering" "$@"
