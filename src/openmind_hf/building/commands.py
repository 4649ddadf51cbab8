"""`openmind preset`: build and save a preset model and its processor.

openmind preset tiny --output DIR
"""

from __future__ import annotations

import argparse

# = `presets.PRESETS`, spelled out so `openmind preset --help` imports no torch (tests/test_cli_startup.py checks).
PRESETS = ("tiny", "small")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=PRESETS, help="preset to build")
    parser.add_argument("--output", required=True, help="directory to save the model and processor in")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from .presets import build_preset

    model, _ = build_preset(args.name, args.output, seed=args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"Saved the '{args.name}' preset ({n_params / 1e6:.2f}M parameters) to {args.output}")
    return 0


__all__ = ["add_arguments", "run"]
