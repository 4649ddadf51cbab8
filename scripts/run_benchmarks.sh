#!/usr/bin/env bash
# Run every benchmark whose eval set is present locally and write one JSON report (+ a markdown table).
#   scripts/run_benchmarks.sh --model PATH [--data DIR] [--output results/benchmarks.json] [other `openmind eval` flags]
# DIR defaults to $OPENMIND_EVAL_DATA, else ./data/eval, else ../shared/data next to the repo (GSM8K, HumanEval and
# MATH-500 as their authors publish them). Which file each task reads: src/openmind_hf/evaluation/tasks.py.
# Extra flags go to `openmind eval`, e.g. --enable-thinking --limit 100 --batch-size 16 --max-new-tokens 1024.
set -euo pipefail

die() { echo "run_benchmarks.sh: $*" >&2; exit 1; }

repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi

model=""
data="${OPENMIND_EVAL_DATA:-}"
output="results/benchmarks.json"
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --model) [ $# -ge 2 ] || die "--model needs a value"; model="$2"; shift 2 ;;
        --data) [ $# -ge 2 ] || die "--data needs a value"; data="$2"; shift 2 ;;
        --output) [ $# -ge 2 ] || die "--output needs a value"; output="$2"; shift 2 ;;
        -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) extra+=("$1"); shift ;;
    esac
done
[ -n "$model" ] || die "--model is required (a checkpoint directory or Hub id)."
if [ -z "$data" ]; then
    for candidate in data/eval "$repo/../shared/data"; do
        if [ -d "$candidate" ]; then data="$candidate"; break; fi
    done
fi
[ -n "$data" ] && [ -d "$data" ] || die "no eval data directory: pass --data DIR or set OPENMIND_EVAL_DATA."

echo ">> evaluating $model on every task present under $data"
PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}" \
    "$python" -m openmind_hf.cli eval --model "$model" --data "$data" --output "$output" ${extra[@]+"${extra[@]}"}
