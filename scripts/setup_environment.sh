#!/usr/bin/env bash
# Create .venv and install OpenMind with its extras. Safe to run again: it only installs what is missing.
#   TORCH_VERSION=2.13.0 (default) pins torch; it is installed FIRST so no other package can pull a
#   different (multi-GB CUDA) build. OPENMIND_EXTRAS=serve,quant,eval,train,chat,dev picks the extras.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
EXTRAS="${OPENMIND_EXTRAS:-serve,quant,eval,train,chat,dev}"
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

die() { echo "setup_environment.sh: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found. Install Python >= 3.10 or set PYTHON=/path/to/python."
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "Python >= 3.10 is required ($("$PYTHON" --version))."

if [ ! -x "$VENV/bin/python" ]; then
    echo ">> creating $VENV"
    "$PYTHON" -m venv "$VENV" || die "could not create $VENV (on Debian: apt install python3-venv)."
fi
PY="$VENV/bin/python"

stamp="$VENV/.openmind-installed"
want="torch=$TORCH_VERSION extras=$EXTRAS $(cat pyproject.toml | sha1sum | cut -c1-12)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo ">> environment up to date ($VENV)"
    exit 0
fi

"$PY" -m pip install --quiet --upgrade pip 2>/dev/null || true
if ! "$PY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    echo ">> installing torch==$TORCH_VERSION"
    "$PY" -m pip install --quiet "torch==$TORCH_VERSION" || die "could not install torch==$TORCH_VERSION. Set TORCH_VERSION to a version your index has."
fi
echo ">> installing openmind-hf[$EXTRAS]"
# torch is repeated with its pin so that no dependency can upgrade it.
"$PY" -m pip install --quiet -e ".[$EXTRAS]" "torch==$TORCH_VERSION" || die "pip could not install the package; see the messages above."
"$PY" -c "import openmind_hf" || die "openmind_hf does not import after install."
echo "$want" > "$stamp"
echo ">> done: activate with 'source $VENV/bin/activate'"
