"""Finds and loads `recipes/<stage>.py`, so that `openmind train --stage X` and the demo run the recipe itself.

    recipe = load_recipe("sft")
    recipe.main(*recipe.make_parser().parse_args_and_config(["--config", "recipes/configs/tiny/sft.yaml"]))

The recipes are scripts (`python recipes/sft.py`, `accelerate launch ... recipes/sft.py`), not a package, so they
are loaded by path, like TRL's CLI runs its scripts. They live in the source checkout: `OPENMIND_RECIPES_DIR`
points elsewhere (an installed wheel carries no recipes).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .arguments import STAGES

# src/openmind_hf/training/recipe_loader.py -> the checkout's root
_CHECKOUT_RECIPES = Path(__file__).resolve().parents[3] / "recipes"


def recipes_dir() -> Path:
    """The folder holding `<stage>.py` recipes: `$OPENMIND_RECIPES_DIR`, else the source checkout's `recipes/`."""
    return Path(os.environ.get("OPENMIND_RECIPES_DIR") or _CHECKOUT_RECIPES)


def load_recipe(stage: str):
    """
    The recipe module of `stage` (`make_parser`, `build_trainer`, `main`).

    Args:
        stage (`str`): one of `pretrain`, `sft`, `dpo`, `reward`, `grpo`.
    """
    if stage not in STAGES:
        raise ValueError(f"Unknown stage {stage!r}: choose one of {', '.join(STAGES)}.")
    path = recipes_dir() / f"{stage}.py"
    if not path.is_file():
        raise FileNotFoundError(
            f"The {stage} recipe is not at {path}. `openmind train` runs the recipes of a source checkout: run it "
            "from a clone of the repository, or set OPENMIND_RECIPES_DIR to a folder holding the recipes."
        )
    spec = importlib.util.spec_from_file_location(f"openmind_recipe_{stage}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_stage_args(stage: str, argv: list[str] | None = None) -> tuple:
    """
    Parses `argv` (with an optional `--config file.yaml`) with the stage recipe's parser: flags override the YAML,
    unknown keys in either raise. Returns the recipe's dataclasses in its order, the training config last.
    """
    return load_recipe(stage).make_parser().parse_args_and_config(args=argv)


__all__ = ["load_recipe", "parse_stage_args", "recipes_dir"]
