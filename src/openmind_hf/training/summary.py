"""The end-of-run summary: where the model is, the final metrics, what was skipped. Printed and saved as JSON."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

SUMMARY_NAME = "run_summary.json"


@dataclass
class RunSummary:
    r"""
    What a finished stage reports, saved as `output_dir/run_summary.json`.

    Args:
        stage (`str`): `pretrain`, `sft`, `dpo`, `reward` or `grpo`.
        output_dir (`str`): the run folder.
        model_dir (`str`): where the final model (or adapter) is.
        merged_model_dir (`str`, *optional*): the merged LoRA model, when one was written.
        resumed_from (`str`, *optional*): the checkpoint the run resumed from.
        model_name_or_path (`str`, *optional*): the checkpoint the stage started from (None: a preset or towers
            composed from config); the model card follows it to the earlier stages.
        datasets (`list[str]`, *optional*): the training data (`--dataset_name` paths or Hub ids).
        global_step (`int`, *optional*, defaults to 0): optimizer steps done.
        metrics (`dict`, *optional*): the final train (and eval) metrics.
        trainable_parameters (`dict`, *optional*): `{tower: {"trainable", "total"}}`.
        skipped (`dict`, *optional*): the bad-data report (`SkipReport.to_dict`).
        wall_seconds (`float`, *optional*, defaults to 0.0): the run's wall time.
    """

    stage: str
    output_dir: str
    model_dir: str
    merged_model_dir: str | None = None
    resumed_from: str | None = None
    model_name_or_path: str | None = None
    datasets: list[str] = field(default_factory=list)
    global_step: int = 0
    metrics: dict = field(default_factory=dict)
    trainable_parameters: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    wall_seconds: float = 0.0

    def save(self) -> str:
        path = os.path.join(self.output_dir, SUMMARY_NAME)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(asdict(self), f, indent=2)
        return path

    def render(self) -> str:
        lines = [f"== OpenMind {self.stage}: done in {self.wall_seconds:.1f} s, {self.global_step} steps =="]
        lines.append(f"model:     {self.model_dir}")
        if self.merged_model_dir:
            lines.append(f"merged:    {self.merged_model_dir} (LoRA folded in; load it like any checkpoint)")
        if self.model_name_or_path:
            lines.append(f"from:      {self.model_name_or_path}")
        if self.datasets:
            lines.append(f"data:      {', '.join(self.datasets)}")
        if self.resumed_from:
            lines.append(f"resumed:   {self.resumed_from}")
        for key in sorted(self.metrics):
            value = self.metrics[key]
            lines.append(f"{key + ':':<26}{value:.6g}" if isinstance(value, float) else f"{key + ':':<26}{value}")
        trainable = ", ".join(
            f"{k} {v['trainable']}/{v['total']}" for k, v in sorted(self.trainable_parameters.items())
        )
        lines.append(f"trainable: {trainable}")
        count = self.skipped.get("count", 0)
        lines.append(f"skipped:   {count} record(s)" + (f" (see {self.output_dir}/skips/)" if count else ""))
        return "\n".join(lines)


__all__ = ["SUMMARY_NAME", "RunSummary"]
