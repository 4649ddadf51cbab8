"""One function per training stage, shared by `recipes/*.py` and `openmind train --stage ...`.

    summary = run_stage("sft", model_args, data_args, training_args)

Each stage: seed, build the model (freezing / LoRA), load the data under the bad-data policy, build the TRL trainer,
train (resuming from the newest complete checkpoint when asked), save the final model + processor, and write the
run summary.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time

import torch
from transformers import set_seed

from ..data.errors import DataError
from ..processing.collator import OpenMindCollator
from .arguments import DataArguments, GRPOScriptArguments, ModelArguments
from .collators import CachedChatCollator, PreferenceCollator, RewardCollator
from .data import IndexedCollator, index_dataset, load_chat_store, load_preference_store
from .model_setup import prepare_model, trainable_summary
from .summary import RunSummary

logger = logging.getLogger(__name__)


class PromptStore(torch.utils.data.Dataset):
    """Chat samples -> GRPO prompt samples: the turns before the last assistant turn, its `answer` (metadata.answer,
    else the reference assistant text) and `task` (metadata.task)."""

    def __init__(self, chats):
        self.chats = chats
        self.skip_report = getattr(chats, "skip_report", None)

    def __len__(self) -> int:
        return len(self.chats)

    def __getitem__(self, index: int) -> dict:
        sample = self.chats[index]
        messages = sample["messages"]
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None or last == 0:
            raise DataError("a GRPO prompt needs a user turn before the reference answer", sample_id=sample.get("id"))
        metadata = sample.get("metadata") or {}
        reference = "".join(b.get("text", "") for b in messages[last]["content"] if b.get("type") == "text")
        return {
            **sample,
            "prompt": messages[:last],
            "answer": str(metadata.get("answer", reference)),
            "task": metadata.get("task"),
        }


def _tower_lrs(model_args: ModelArguments) -> dict:
    return {
        "vision": model_args.vision_lr,
        "audio": model_args.audio_lr,
        "projectors": model_args.projector_lr,
        "llm": model_args.llm_lr,
    }


def _reference_model(model, model_args: ModelArguments):
    """A frozen copy of the starting policy (DPO, GRPO); None with LoRA, where disabling the adapter gives it."""
    if model_args.use_lora:
        return None
    return copy.deepcopy(model).eval().requires_grad_(False)


def _eval_store(data_args: DataArguments, loader, report):
    return loader(data_args, report, eval_split=True) if data_args.eval_dataset_name else None


def _eval_rows(eval_store):
    return index_dataset(eval_store, "eval") if eval_store is not None else None


def build_trainer(stage: str, model_args, data_args, training_args, script_args=None, callbacks=None):
    """The stage's trainer, ready to `train()`, and the bad-data `SkipReport` its data fills."""
    from ..data.policy import SkipReport
    from .trainers import OpenMindDPOTrainer, OpenMindGRPOTrainer, OpenMindRewardTrainer, OpenMindSFTTrainer

    set_seed(training_args.seed)
    report = SkipReport(run_dir=training_args.output_dir if training_args.should_save else None)
    model, processor, _ = prepare_model(
        model_args,
        stage,
        seed=training_args.seed,
        gradient_checkpointing=training_args.gradient_checkpointing,
        trust_remote_code=training_args.trust_remote_code,
    )
    common = {"args": training_args, "callbacks": callbacks, "tower_lrs": _tower_lrs(model_args)}
    max_length = getattr(training_args, "max_length", None)

    if stage in ("pretrain", "sft"):
        store = load_chat_store(data_args, report)
        eval_store = _eval_store(data_args, load_chat_store, report)
        collator_cls = CachedChatCollator if data_args.cache_encoded_samples else OpenMindCollator
        collate = collator_cls(
            processor,
            max_length=max_length,
            packing=training_args.openmind_packing,
            enable_thinking=data_args.enable_thinking,
            on_error=data_args.on_error,
            skip_report=report,
        )
        trainer = OpenMindSFTTrainer(
            model=model,
            data_collator=IndexedCollator({"train": store, "eval": eval_store}, collate),
            train_dataset=index_dataset(store),
            eval_dataset=_eval_rows(eval_store),
            processing_class=processor,
            **common,
        )
    elif stage == "dpo":
        store = load_preference_store(data_args, report)
        eval_store = _eval_store(data_args, load_preference_store, report)
        collate = PreferenceCollator(processor, max_length, bool(data_args.enable_thinking))
        trainer = OpenMindDPOTrainer(
            model=model,
            ref_model=_reference_model(model, model_args),
            data_collator=IndexedCollator({"train": store, "eval": eval_store}, collate),
            train_dataset=index_dataset(store),
            eval_dataset=_eval_rows(eval_store),
            processing_class=processor,
            **common,
        )
    elif stage == "reward":
        store = load_preference_store(data_args, report)
        eval_store = _eval_store(data_args, load_preference_store, report)
        trainer = OpenMindRewardTrainer(
            model=model,
            data_collator=IndexedCollator(
                {"train": store, "eval": eval_store},
                RewardCollator(processor, max_length, bool(data_args.enable_thinking)),
            ),
            train_dataset=index_dataset(store),
            eval_dataset=_eval_rows(eval_store),
            processing_class=processor.tokenizer,
            processor=processor,
            **common,
        )
    elif stage == "grpo":
        from .rewards import get_reward_functions

        script_args = script_args or GRPOScriptArguments()
        store = PromptStore(load_chat_store(data_args, report))
        if data_args.enable_thinking:
            training_args.chat_template_kwargs = {
                **(training_args.chat_template_kwargs or {}),
                "enable_thinking": True,
            }
        # TRL suppresses only the image token while sampling; a sampled <audio>/<video> would break the next forward.
        suppress = [processor.image_token_id, processor.audio_token_id, processor.video_token_id]
        generation_kwargs = dict(training_args.generation_kwargs or {})
        generation_kwargs["suppress_tokens"] = sorted(
            set(generation_kwargs.get("suppress_tokens", [])) | set(suppress)
        )
        training_args.generation_kwargs = generation_kwargs
        trainer = OpenMindGRPOTrainer(
            model=model,
            ref_model=_reference_model(model, model_args) if training_args.beta != 0.0 else None,
            reward_funcs=get_reward_functions(script_args.reward_funcs, script_args.reward_model),
            train_dataset=index_dataset(store),
            processing_class=processor,
            store=store,
            **common,
        )
    else:
        raise ValueError(f"Unknown stage {stage!r}")
    return trainer, processor, report


def _save_final(trainer, processor, model_args: ModelArguments, output_dir: str) -> str | None:
    """Saves the trained model (or adapter) + processor; with LoRA also a merged full model in `merged/`."""
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


def run_stage(
    stage: str,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args,
    script_args: GRPOScriptArguments | None = None,
    callbacks=None,
) -> RunSummary:
    """Trains one stage end to end and returns (and prints, and saves) its `RunSummary`."""
    start = time.time()
    trainer, processor, report = build_trainer(
        stage, model_args, data_args, training_args, script_args=script_args, callbacks=callbacks
    )
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    output_dir = training_args.output_dir
    merged_dir = _save_final(trainer, processor, model_args, output_dir)
    metrics = dict(result.metrics)
    if trainer.eval_dataset is not None:
        metrics.update(trainer.evaluate())
    report.collect()
    summary = RunSummary(
        stage=stage,
        output_dir=output_dir,
        model_dir=output_dir,
        merged_model_dir=merged_dir,
        resumed_from=getattr(trainer, "openmind_resumed_from", None),
        global_step=trainer.state.global_step,
        metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        trainable_parameters=trainable_summary(trainer.model),
        skipped=report.to_dict(max_records=100),
        wall_seconds=time.time() - start,
    )
    if trainer.args.should_save:
        summary.save()
        with open(os.path.join(output_dir, "log_history.json"), "w", encoding="utf-8") as f:
            json.dump(trainer.state.log_history, f)
        print(summary.render(), flush=True)
        if report.count:
            print(report.summary(), flush=True)
    return summary


__all__ = ["PromptStore", "build_trainer", "run_stage"]
