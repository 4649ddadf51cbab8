"""The loss-curve PNG every training stage saves next to its model (`loss_curve.png`), and the demo's three-panel one.

Each panel reads a stage folder: the exact per-step loss from `loss_history.jsonl` (log scale when it spans a decade), or, for a GRPO stage
(whose loss is ~0 by construction), the mean reward that `log_history.json` records.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

LOSS_CURVE = "loss_curve.png"


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _rewards(folder: Path) -> list[dict]:
    """The GRPO log entries with a mean reward (empty for any other stage)."""
    path = folder / "log_history.json"
    if not path.is_file():
        return []
    return [h for h in json.loads(path.read_text(encoding="utf-8")) if "reward" in h and "step" in h]


def _panel(ax, name: str, folder: Path) -> None:
    rewards = _rewards(folder)
    if rewards:  # GRPO: the loss is ~0 by construction; its reward is what moves
        steps, values, label = [h["step"] for h in rewards], [h["reward"] for h in rewards], "mean reward"
    else:
        path = folder / "loss_history.jsonl"
        history = _read_jsonl(path) if path.is_file() else []
        steps, values, label = [h["step"] for h in history], [h["loss"] for h in history], "loss"
        if values and min(values) > 0 and max(values) > 10 * min(values):  # log only when it spans a decade
            ax.set_yscale("log")
    ax.plot(steps, values, lw=1, marker="o" if len(steps) < 20 else None, ms=3)
    ax.set_title(name)
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)


def save_loss_curve(path: str | Path, stage_dirs: dict[str, str | Path]) -> Path:
    """
    Plots one panel per stage and saves the figure as a PNG.

    Args:
        path (`str` or `Path`): the PNG to write (its folder must exist).
        stage_dirs (`dict[str, str | Path]`): panel title -> the stage's output folder (with `loss_history.jsonl`,
            and `log_history.json` for GRPO), in panel order.

    Returns:
        `Path`: the PNG written.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: CI, servers, the demo
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(stage_dirs), figsize=(4.5 * len(stage_dirs), 3.4), squeeze=False)
    for ax, (name, folder) in zip(axes[0], stage_dirs.items()):
        _panel(ax, name, Path(folder))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_run_loss_curve(output_dir: str | Path, stage: str) -> Path | None:
    """
    `output_dir/loss_curve.png` for one finished stage (what `run.finish_run` calls). Without matplotlib (installed
    with the `train` extra) it logs how to get it and returns None rather than failing a finished run.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        logger.warning("No %s: matplotlib is not installed (pip install 'openmind_hf[train]').", LOSS_CURVE)
        return None
    return save_loss_curve(Path(output_dir) / LOSS_CURVE, {f"{stage} ({Path(output_dir).name})": output_dir})


__all__ = ["LOSS_CURVE", "save_loss_curve", "save_run_loss_curve"]
