"""`openmind eval`: evaluate a checkpoint on benchmark tasks and write a JSON report.

    openmind eval --model PATH --data DIR --tasks gsm8k,math,humaneval --output results/benchmarks.json
    openmind eval --model PATH --data DIR --enable-thinking --thinking-budget 256 --limit 50

Without `--tasks`, every task whose file is present under DIR runs (layout: `openmind_hf.evaluation.tasks`).
"""

from __future__ import annotations

import argparse
import json

from .tasks import TASKS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint directory or Hub id")
    parser.add_argument("--data", required=True, help="directory with the task files (see --list-tasks)")
    parser.add_argument(
        "--tasks",
        default="",
        help=f"comma-separated subset of {','.join(TASKS)}; default: every task whose file is present",
    )
    parser.add_argument("--output", default="results/benchmarks.json", help="JSON report path")
    parser.add_argument("--predictions", default=None, help="also write every generation and score to this JSONL")
    parser.add_argument("--enable-thinking", action="store_true", help="generate with the thinking block on")
    parser.add_argument("--thinking-budget", type=int, default=None, help="force-close thinking after N tokens")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per generate call (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="generation length limit (default 512)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N samples of each task")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda:0, ...")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, ...")


def run(args: argparse.Namespace) -> int:
    from .runner import EvalConfig, markdown_table, run_evaluation

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise SystemExit(f"openmind eval: unknown task(s) {unknown}; choose from {','.join(TASKS)}.")
    config = EvalConfig(
        model=args.model,
        data_dir=args.data,
        tasks=tasks,
        output=args.output,
        enable_thinking=args.enable_thinking,
        thinking_budget=args.thinking_budget,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        limit=args.limit,
        device=args.device,
        dtype=args.dtype,
        predictions=args.predictions,
    )
    try:
        report = run_evaluation(config)
    except FileNotFoundError as err:
        raise SystemExit(f"openmind eval: {err}") from None
    print(markdown_table(report))
    print(f"\nreport: {args.output}" if args.output else json.dumps(report, indent=2))
    return 0


__all__ = ["add_arguments", "run"]
