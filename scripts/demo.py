"""`make demo`: train a tiny vision + audio + text OpenMind from scratch on CPU and show that it learned.

    python scripts/demo.py --output outputs/demo

Writes synthetic data, trains stage 1 (captions) -> stage 2 (instructions) -> a short GRPO stage (reasoning, thinking
on, accuracy + format rewards), prints held-out accuracy per modality before and after, saves a loss-curve PNG,
answers one image and one audio question through `AutoModelForImageTextToText` + `pipeline`, and writes
`OUTPUT/summary.json` (`accuracy`, `chance`, `wall_seconds`, ...). Every field of `DemoConfig` is a flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads: spinning OpenMP threads stall busy 2-core CPUs
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from openmind_hf.training.demo import DemoConfig, run_demo  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(DemoConfig):
        if f.name != "overrides":
            default = f.default
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(default), default=default)
    args = parser.parse_args(argv)
    summary = run_demo(DemoConfig(**vars(args)))
    return 0 if all(summary["targets_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
