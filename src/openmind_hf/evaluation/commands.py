"""`openmind eval`: evaluate a checkpoint on benchmark tasks and write a JSON report.

    openmind eval --model PATH --data DIR --tasks gsm8k,math,humaneval --output results/benchmarks.json
    openmind eval --model PATH --data DIR --enable-thinking --thinking-budget 256 --limit 50
    openmind eval --model PATH --data DIR --tasks vqa --prompt-template "{question}" --media_root images/
    openmind eval --list-tasks

Without `--tasks`, every task whose file is present under DIR runs (layout: `openmind_hf.evaluation.tasks`).
The user's text is each task's prompt template filled with the row (`--list-tasks` prints them; VQA's is the question
as written); `--predictions` records every prompt as the model received it.
"""

from __future__ import annotations

import argparse
import json
import sys

from .tasks import TASKS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="checkpoint directory or Hub id (required unless --list-tasks)")
    parser.add_argument(
        "--data", help="directory with the task files (see --list-tasks; required unless --list-tasks)"
    )
    parser.add_argument(
        "--list-tasks", action="store_true", help="print each task's files and default prompt template, then exit"
    )
    parser.add_argument(
        "--prompt-template",
        default=None,
        help="user text as a template over the row's fields, e.g. '{question}\nAnswer in one word.'; "
        "default: each task's own (see --list-tasks)",
    )
    parser.add_argument(
        "--media_root",
        "--media-root",
        dest="media_root",
        default=None,
        help="folder that relative image paths resolve against (default: the task file's folder)",
    )
    parser.add_argument(
        "--tasks",
        default="",
        help=f"comma-separated subset of {','.join(TASKS)}; default: every task whose file is present",
    )
    parser.add_argument("--output", default="results/benchmarks.json", help="JSON report path")
    parser.add_argument(
        "--predictions",
        default=None,
        help="also write, per item, the prompt as sent, the references, the generation, the answer and its score "
        "to this JSONL",
    )
    parser.add_argument("--enable-thinking", action="store_true", help="generate with the thinking block on")
    parser.add_argument("--thinking-budget", type=int, default=None, help="force-close thinking after N tokens")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per generate call (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="generation length limit (default 512)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N samples of each task")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda:0, ...")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, ...")
    parser.add_argument(
        "--allow-unsandboxed-code",
        action="store_true",
        help="run humaneval's model-written code with only rlimits + an audit hook when bubblewrap is unavailable "
        "(not a security boundary: only for code you would run on this machine anyway)",
    )
    parser.add_argument(
        "--allow-pickled-weights",
        action="store_true",
        help="also load a checkpoint whose weights are only pickled (pytorch_model.bin); unpickling can run code",
    )


def run(args: argparse.Namespace) -> int:
    from .runner import EvalConfig, markdown_table, run_evaluation

    if args.list_tasks:
        from .tasks import describe_tasks

        print(describe_tasks())
        return 0
    missing = [flag for flag, value in (("--model", args.model), ("--data", args.data)) if not value]
    if missing:
        raise SystemExit(f"openmind eval: {' and '.join(missing)} required (or --list-tasks to see the tasks).")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise SystemExit(f"openmind eval: unknown task(s) {unknown}; choose from {','.join(TASKS)}.")
    _require_code_sandbox(args, tasks)
    try:
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
            prompt_template=args.prompt_template,
            media_root=args.media_root,
            allow_pickled_weights=args.allow_pickled_weights,
        )
        report = run_evaluation(config)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"openmind eval: {err}") from None
    print(markdown_table(report))
    print(f"\nreport: {args.output}" if args.output else json.dumps(report, indent=2))
    return 0


def _require_code_sandbox(args: argparse.Namespace, tasks: list[str]) -> None:
    # Checked before the model loads: code tasks run model-written code, which needs bubblewrap around it.
    from .sandbox import allow_unsandboxed_code, boundary_status

    runs_code = "humaneval" in tasks or (not tasks and TASKS["humaneval"].find_file(args.data) is not None)
    if not runs_code:
        return
    available, reason = boundary_status()
    if available:
        return
    if not args.allow_unsandboxed_code:
        raise SystemExit(
            f"openmind eval: humaneval runs model-written code and there is no sandbox boundary here: {reason}. "
            "Install bubblewrap (`make test-deps` or `apt-get install bubblewrap`), leave humaneval out of --tasks, "
            "or pass --allow-unsandboxed-code to run it with only in-process limits."
        )
    print(f"openmind eval: WARNING: running model-written code without an OS boundary ({reason}).", file=sys.stderr)
    allow_unsandboxed_code()


__all__ = ["add_arguments", "run"]
