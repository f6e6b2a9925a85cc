#!/usr/bin/env bash
# The engine of two checkouts on one CPU, interleaved over 3 rounds: bash compare.sh OLD_CHECKOUT NEW_CHECKOUT
# (e.g. `git worktree add --detach /tmp/old b3045b7` for the engine before the 2026-11-30 CPU-side fixes).
here=$(cd "$(dirname "$0")" && pwd)
model=$(cd "$2" && pwd)/hcmrm/models/kuake-small-match
for n in 4 40; do for round in 1 2 3; do for tree in "$1" "$2"; do
  echo "$tree round $round $(cd "$tree" && PYTHONPATH=$PWD TOKENIZERS_PARALLELISM=false "$here/../../.venv/bin/python" "$here/one.py" $n "$model")"
done; done; done
