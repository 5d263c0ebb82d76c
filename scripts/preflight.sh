#!/usr/bin/env bash
# Run before each DVC stage: fail fast, saying what to run, when a prerequisite is missing.
set -euo pipefail
die() { printf 'kairos-curate: %s\n' "$*" >&2; exit 1; }
command -v papermill >/dev/null \
  || die "papermill not found on PATH: run \`make setup\` then \`source .venv/bin/activate\` (or use \`make repro\`)"
python -c 'import kairos_curate' 2>/dev/null \
  || die "the kairos_curate package is not importable by $(command -v python): run \`make setup\`"
jupyter kernelspec list 2>/dev/null | grep -qE '^\s*python3\s' \
  || die "no 'python3' Jupyter kernel: run \`make setup\` (it registers the kernel inside .venv)"
