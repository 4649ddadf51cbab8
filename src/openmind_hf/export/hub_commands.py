"""`openmind push`: upload a checkpoint and its generated model card to the Hub in one commit.

    openmind push --model DIR --repo-id org/name [--private] [--benchmarks results/benchmarks.json]
    openmind push --model DIR --repo-id org/name --dry-run --save-card CARD.md   # check + show the commit only

Log in first (`hf auth login`) or set `HF_TOKEN`. `--endpoint` (or `HF_ENDPOINT`) targets another Hub-compatible
server.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint directory (model + processor, save_pretrained)")
    parser.add_argument("--repo-id", required=True, help="target repository, org/name")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--endpoint", default=None, help="Hub URL (default: $HF_ENDPOINT or huggingface.co)")
    parser.add_argument("--benchmarks", default=None, help="an `openmind eval` JSON report to put in the card")
    parser.add_argument("--license", default="apache-2.0", help="license tag of the card (default apache-2.0)")
    parser.add_argument("--commit-message", default=None)
    parser.add_argument("--dry-run", action="store_true", help="check and print the commit; upload nothing")
    parser.add_argument("--save-card", default=None, help="also write the generated README.md to this path")


def run(args: argparse.Namespace) -> int:
    from .hub import CheckpointFilesError, push_checkpoint

    if args.benchmarks and not Path(args.benchmarks).is_file():
        raise SystemExit(
            f"openmind push: --benchmarks {args.benchmarks} does not exist (write it with `openmind eval`)."
        )
    try:
        plan = push_checkpoint(
            args.model,
            args.repo_id,
            private=args.private,
            endpoint=args.endpoint,
            benchmarks=args.benchmarks,
            license=args.license,
            commit_message=args.commit_message,
            dry_run=args.dry_run,
        )
    except (CheckpointFilesError, ValueError, OSError) as err:
        raise SystemExit(f"openmind push: {err}") from None
    if args.save_card:
        Path(args.save_card).write_text(plan.card)
    print(plan.describe())
    print("dry run: nothing was sent." if args.dry_run else f"pushed: {plan.commit_url}")
    return 0


__all__ = ["add_arguments", "run"]
