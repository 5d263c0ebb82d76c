#!/usr/bin/env bash
# Idempotent set-up of everything the project needs on a fresh machine; does only what is missing.
#   1. a virtualenv in .venv with this package and its dev extras (re-run when pyproject.toml changes)
#   2. the offline default images: Debian's dataset-fashion-mnist (unless $KAIROS_FASHION_MNIST_DIR is set)
#   3. the `python3` Jupyter kernel inside the venv (papermill runs the stage notebooks with it)
#   4. DVC analytics off
#   5. Debian's headless Chromium (the report stage screenshots its pages; the tests check them)
# Usage: bash scripts/setup.sh   (called by `make repro` and `make test`)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3.10+ (e.g. apt-get install python3 python3-venv)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "Python 3.10+ is needed; $PYTHON is $("$PYTHON" -V 2>&1)"

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV" || die "could not create $VENV (on Debian: apt-get install python3-venv)"
fi

stamp="$VENV/.kairos-installed"
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! "$VENV/bin/python" -c 'import kairos_curate, torch, torchvision' 2>/dev/null; then
  say "installing the project and its dependencies into $VENV (torch takes a minute or two)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[dev]" || die "pip install failed; see the messages above"
  echo "$want" > "$stamp"
else
  say "packages up to date"
fi

apt_install() {  # apt_install PACKAGE... : as root, via sudo, or fail saying what to run
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    die "run as root: apt-get update && apt-get install -y $*"
  fi
  $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq "$@" >/dev/null \
    || die "apt-get install $* failed"
}

fmnist_dir=${KAIROS_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$fmnist_dir/train-images-idx3-ubyte.gz" ]; then
  if [ -n "${KAIROS_FASHION_MNIST_DIR:-}" ]; then
    die "KAIROS_FASHION_MNIST_DIR=$fmnist_dir holds no train-images-idx3-ubyte.gz"
  fi
  say "installing the default images (Debian package dataset-fashion-mnist)"
  apt_install dataset-fashion-mnist
fi

if ! command -v chromium >/dev/null; then
  say "installing headless Chromium (Debian package chromium) for report screenshots and browser checks"
  apt_install chromium
fi

if ! "$VENV/bin/jupyter" kernelspec list 2>/dev/null | grep -q "python3 .*$(pwd)/$VENV"; then
  say "registering the python3 Jupyter kernel inside $VENV"
  "$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (kairos-curate)" >/dev/null
fi

"$VENV/bin/dvc" config --local core.analytics false >/dev/null 2>&1 || true
say "ready"
