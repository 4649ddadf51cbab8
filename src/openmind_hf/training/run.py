"""The steps every recipe takes around its trainer, in the order it takes them:

report = start_run(training_args)                      # seed, the bad-data report
... model, data, collator, trainer (the recipe's own) ...
train_output = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
merged_dir = save_final_model(trainer, processor, model_args)
summary = finish_run("sft", trainer, train_output, report, started, merged_dir)
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
import time

from transformers import set_seed

from ..data.errors import DataError
from ..data.policy import SkipReport
from .arguments import DataArguments, ModelArguments
from .distributed import check_distributed_launch, honour_zero3_init_flag
from .model_setup import trainable_summary
from .plots import save_run_loss_curve
from .summary import RunSummary

LOG_HISTORY = "log_history.json"


def start_run(training_args) -> SkipReport:
    """
    Refuses a multi-process launch that would silently not be distributed (`distributed.check_distributed_launch`),
    seeds every RNG (before the model is built, so its random init is reproducible) and returns the run's bad-data
    report, which writes its records under `output_dir/skips/` on the main process.

    Args:
        training_args (`transformers.TrainingArguments`): the stage's TRL config.
    """
    check_distributed_launch(training_args)
    honour_zero3_init_flag(training_args)
    set_seed(training_args.seed)
    return SkipReport(run_dir=training_args.output_dir if training_args.should_save else None)


def tower_lrs(model_args: ModelArguments) -> dict[str, float | None]:
    """The per-tower learning rates of `model_args` (None: the tower uses `--learning_rate`)."""
    return {
        "vision": model_args.vision_lr,
        "audio": model_args.audio_lr,
        "projectors": model_args.projector_lr,
        "llm": model_args.llm_lr,
    }


def reference_model(model, model_args: ModelArguments):
    """
    The frozen reference policy of DPO and GRPO: a copy of the starting model; None with LoRA, where TRL gets the
    reference by switching the adapter off.
    """
    if model_args.use_lora:
        return None
    return copy.deepcopy(model).eval().requires_grad_(False)


def save_final_model(trainer, processor, model_args: ModelArguments) -> str | None:
    """
    Saves the trained model (or LoRA adapter) and the processor to `output_dir`; with LoRA (not QLoRA) also a merged
    full model in `output_dir/merged`, which loads like any checkpoint.

    Returns:
        `str` or None: the merged model's folder, when one was written.
    """
    output_dir = trainer.args.output_dir
    trainer.save_model(output_dir)
    if not trainer.args.should_save:
        return None
    processor.save_pretrained(output_dir)
    if not model_args.use_lora or model_args.load_in_4bit:
        return None
    merged_dir = os.path.join(output_dir, "merged")
    merged = copy.deepcopy(trainer.accelerator.unwrap_model(trainer.model)).merge_and_unload()
    merged.save_pretrained(merged_dir)
    processor.save_pretrained(merged_dir)
    return merged_dir


def finish_run(
    stage: str,
    trainer,
    train_output,
    report: SkipReport,
    started: float,
    merged_dir: str | None = None,
    model_args: ModelArguments | None = None,
    data_args: DataArguments | None = None,
) -> RunSummary:
    """
    Evaluates (when there is eval data), then writes `run_summary.json`, `log_history.json`, `loss_curve.png` and
    OpenMind's model card (`README.md`, replacing TRL's generic one) and prints the summary and the skip report (main
    process only).

    Args:
        stage (`str`): the stage name shown in the summary.
        trainer (`transformers.Trainer`): the trained trainer.
        train_output (`transformers.trainer_utils.TrainOutput`): what `trainer.train()` returned.
        report (`SkipReport`): the run's bad-data report (from `start_run`).
        started (`float`): `time.time()` at the start of the run.
        merged_dir (`str`, *optional*): the merged LoRA model's folder (from `save_final_model`).
        model_args (`ModelArguments`, *optional*): recorded as the summary's `model_name_or_path`.
        data_args (`DataArguments`, *optional*): recorded as the summary's `datasets`.
    """
    metrics = dict(train_output.metrics)
    if trainer.eval_dataset is not None:
        metrics.update(trainer.evaluate())
    report.collect()
    output_dir = trainer.args.output_dir
    summary = RunSummary(
        stage=stage,
        output_dir=output_dir,
        model_dir=output_dir,
        merged_model_dir=merged_dir,
        resumed_from=getattr(trainer, "openmind_resumed_from", None),
        model_name_or_path=model_args.model_name_or_path if model_args is not None else None,
        datasets=[data_args.dataset_name] if data_args is not None and data_args.dataset_name else [],
        global_step=trainer.state.global_step,
        metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        trainable_parameters=trainable_summary(trainer.model),
        skipped=report.to_dict(max_records=100),
        wall_seconds=time.time() - started,
    )
    if trainer.args.should_save:
        summary.save()
        with open(os.path.join(output_dir, LOG_HISTORY), "w", encoding="utf-8") as f:
            json.dump(trainer.state.log_history, f)
        save_run_loss_curve(output_dir, stage)
        _write_model_card(output_dir, merged_dir)
        print(summary.render(), flush=True)
        if report.count:
            print(report.summary(), flush=True)
    return summary


def _write_model_card(output_dir: str, merged_dir: str | None) -> None:
    """OpenMind's card in the model folder(s), read from the summary just saved (a LoRA run's `merged/` gets one too:
    it is the folder that loads like any checkpoint). A LoRA adapter folder has no `config.json` to describe; it
    keeps PEFT's adapter card."""
    from ..export.model_card import write_model_card  # lazy: export is not needed to train

    for folder in [output_dir] + ([merged_dir] if merged_dir else []):
        if os.path.isfile(os.path.join(folder, "config.json")):
            write_model_card(folder)


@contextlib.contextmanager
def one_line_data_errors(program: str):
    """Bad data is the user's to fix: a `DataError` ends the run with its one line (file:line:column, what is wrong,
    what to do) and exit status 1, not a traceback. Wraps a recipe's `__main__` and `openmind train`."""
    try:
        yield
    except DataError as err:
        print(f"{program}: {err}", file=sys.stderr)
        raise SystemExit(1) from None


__all__ = [
    "LOG_HISTORY",
    "one_line_data_errors",
    "finish_run",
    "reference_model",
    "save_final_model",
    "start_run",
    "tower_lrs",
]
