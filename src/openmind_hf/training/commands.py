"""`openmind train --stage pretrain|sft|dpo|reward|grpo --config FILE [--any_field VALUE ...]`.

Runs `recipes/<stage>.py` itself (loaded by path, see `recipe_loader.py`): its parser (flags override the YAML,
unknown keys are an error) and its `main`. Launch it under `accelerate launch` like a recipe, or use the recipes
directly.
"""

from __future__ import annotations

import argparse
import sys

# = `arguments.STAGES`, spelled out so `openmind train --help` does not import TRL and torch (a test checks they agree).
STAGES = ("pretrain", "sft", "dpo", "reward", "grpo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", required=True, choices=STAGES, help="which training stage to run")
    parser.add_argument("--config", help="YAML file with the stage's arguments (see recipes/configs/)")
    parser.epilog = (
        "Every other flag is a field of the stage's dataclasses (ModelArguments, DataArguments, the TRL config), "
        "e.g. --dataset_name my.jsonl --max_steps 10; it overrides the YAML. See `python recipes/<stage>.py --help`."
    )
    # The stage's own flags are only known once --stage is read: collect them here and let TrlParser check them.
    parse_known = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        namespace, rest = parse_known(args, namespace)
        namespace.stage_args = list(getattr(namespace, "stage_args", None) or []) + rest
        return namespace, []

    parser.parse_known_args = parse_known_args


def run(args: argparse.Namespace) -> int:
    from ..data.errors import DataError
    from .recipe_loader import load_recipe

    recipe = load_recipe(args.stage)
    argv = (["--config", args.config] if args.config else []) + list(args.stage_args)
    try:
        recipe.main(*recipe.make_parser().parse_args_and_config(args=argv))
    except DataError as err:  # bad data is the user's to fix: one line naming file:line:column, no traceback
        print(f"openmind train: {err}", file=sys.stderr)
        return 1
    return 0


__all__ = ["add_arguments", "run"]
