"""Every place OpenMind reaches into a private method or attribute of transformers' `Trainer` or TRL, in one file.

Each hook says why upstream offers no public way to do it. The hooks are mixins: `trainers.py` puts them in front of
the TRL trainers and adds only public overrides (`create_optimizer`, `training_step`, `compute_loss`, `train`) and
callbacks. `UPSTREAM_SIGNATURES` records the signature of every upstream private method these mixins override or
call, and `TESTED_VERSIONS` the versions they were checked against; `tests/test_training_trl_internals.py` fails,
naming the method, when an installed version changes one of them or lies outside the tested range.

| hook | upstream private method / attribute | what it does |
|---|---|---|
| `CheckpointHooks` | `Trainer._get_output_dir`, `_save_checkpoint`, `_save`, `_save_optimizer_and_scheduler`, `_load_optimizer_and_scheduler`, `_save_scaler`, `_load_scaler`, `_save_rng_state`, `_load_rng_state`, `_load_from_checkpoint`; GRPO's `entropy_coef`, `_last_world_entropy` | staged, sha256-sealed, pickle-free checkpoints; NaN/inf weights never saved; strict resume |
| `RewardDatasetHook` | `RewardTrainer._prepare_dataset` | rows stay indices; the collator tokenizes with media |
| `GRPOMediaHooks` | `GRPOTrainer._generate_and_score_completions`, `_tokenize_prompts`, `_compute_loss`, `_get_per_token_logps_and_entropies`; `args.beta` during `__init__`; `trl.models.prepare_deepspeed` / `prepare_fsdp`, `trl.trainer.utils.add_fused_lm_head` / `disable_dropout_in_model` | prompt media travel with their rows; an in-memory reference model |
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch

from . import checkpointing

logger = logging.getLogger(__name__)

# [lowest tested, first untested) per package; pyproject.toml carries the same bounds.
TESTED_VERSIONS = {"transformers": ("5.24", "5.25"), "trl": ("1.16", "1.17")}

# Upstream callables the hooks below override or call: (module, qualified name) -> parameter names, in order.
UPSTREAM_SIGNATURES = {
    ("transformers", "Trainer._get_output_dir"): ("self", "trial"),
    ("transformers", "Trainer._save_checkpoint"): ("self", "model", "trial"),
    ("transformers", "Trainer._save"): ("self", "output_dir", "state_dict"),
    ("transformers", "Trainer._save_optimizer_and_scheduler"): ("self", "output_dir"),
    ("transformers", "Trainer._load_optimizer_and_scheduler"): ("self", "checkpoint"),
    ("transformers", "Trainer._save_scaler"): ("self", "output_dir"),
    ("transformers", "Trainer._load_scaler"): ("self", "checkpoint"),
    ("transformers", "Trainer._save_rng_state"): ("self", "output_dir"),
    ("transformers", "Trainer._load_rng_state"): ("self", "checkpoint"),
    ("transformers", "Trainer._load_from_checkpoint"): ("self", "resume_from_checkpoint", "model"),
    ("transformers.trainer_utils", "rotate_checkpoints"): (
        "output_dir",
        "save_total_limit",
        "best_model_checkpoint",
        "use_mtime",
        "checkpoint_prefix",
    ),
    ("trl", "RewardTrainer._prepare_dataset"): ("self", "dataset", "processing_class", "args", "dataset_name"),
    ("trl", "GRPOTrainer._load_optimizer_and_scheduler"): ("self", "checkpoint"),
    ("trl", "GRPOTrainer._generate_and_score_completions"): ("self", "inputs"),
    ("trl", "GRPOTrainer._tokenize_prompts"): ("self", "prompts"),
    ("trl", "GRPOTrainer._compute_loss"): ("self", "model", "inputs"),
    ("trl", "GRPOTrainer._get_per_token_logps_and_entropies"): (
        "self",
        "model",
        "input_ids",
        "attention_mask",
        "logits_to_keep",
        "batch_size",
        "compute_entropy",
        "compute_aux_loss",
        "pixel_values",
        "image_grid_thw",
        "num_images",
        "pixel_attention_mask",
        "spatial_shapes",
        "num_tiles",
        "image_sizes",
        "token_type_ids",
        "mm_token_type_ids",
        "image_position_ids",
    ),
    ("trl.trainer.utils", "add_fused_lm_head"): ("model", "temperature", "cast_lm_head_to_fp32", "outputs"),
    ("trl.trainer.utils", "disable_dropout_in_model"): ("model",),
    ("trl.models", "prepare_deepspeed"): ("model", "accelerator"),
    ("trl.models", "prepare_fsdp"): ("model", "accelerator"),
}

_MEDIA_KEYS = ("pixel_values", "input_features", "feature_attention_mask")


def _version_tuple(version: str) -> tuple[int, ...]:
    from packaging.version import Version

    return Version(version).release


def untested_versions() -> list[str]:
    """`"<package> <installed> (tested: >=low,<high)"` for every package outside `TESTED_VERSIONS`; empty when all fit."""
    import importlib.metadata

    out = []
    for package, (low, high) in TESTED_VERSIONS.items():
        installed = importlib.metadata.version(package)
        if not _version_tuple(low) <= _version_tuple(installed) < _version_tuple(high):
            out.append(f"{package} {installed} (tested: >={low},<{high})")
    return out


def check_versions() -> None:
    """Logs a warning when transformers or TRL is outside the tested range (the hooks may then misbehave)."""
    for line in untested_versions():
        logger.warning("OpenMind's trainer hooks were not tested with %s; see training/trl_internals.py.", line)


# ------------------------------------------------------------------------------------------------ checkpoints


def _plain_state(trainer) -> bool:
    """True when the optimizer lives in this process as a normal torch optimizer (no DeepSpeed/FSDP/XLA/SMP)."""
    from transformers.trainer import is_sagemaker_mp_enabled, is_torch_xla_available

    return not (
        trainer.is_deepspeed_enabled
        or trainer.is_fsdp_enabled
        or is_torch_xla_available()
        or is_sagemaker_mp_enabled()
    )


class CheckpointHooks:
    """
    Staged, sealed, pickle-free checkpoints and strict resume (file formats in `checkpointing.py`). Mix in before
    the TRL trainer. `Trainer` writes a checkpoint straight into `output_dir/checkpoint-N` with `torch.save` pickles,
    and loads weights with `strict=False`; it has no callback that runs *before* files are written or that replaces
    how they are written or read, so the save/load steps themselves are overridden.
    """

    _staging_root: str | None = None

    # Upstream derives the checkpoint folder from this; returning the staging folder makes the stock save write
    # there, so a `checkpoint-N` folder only appears once it is complete.
    def _get_output_dir(self, trial) -> str:
        if self._staging_root is not None:
            return self._staging_root
        return super()._get_output_dir(trial)

    # Upstream saves in place and rotates old checkpoints; here: stage, fsync, seal with a marker, rename, rotate.
    def _save_checkpoint(self, model, trial) -> None:
        run_dir = super()._get_output_dir(trial)
        name = f"checkpoint-{self.state.global_step}"
        staging_root = os.path.join(run_dir, checkpointing.STAGING_DIR)
        staged, final = Path(staging_root) / name, Path(run_dir) / name
        if self.args.should_save:
            shutil.rmtree(staged, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self._staging_root = staging_root
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_root = None
        best = self.state.best_model_checkpoint
        if best and checkpointing.STAGING_DIR in Path(best).parts:
            self.state.best_model_checkpoint = str(Path(run_dir) / Path(best).name)
        self.accelerator.wait_for_everyone()  # every rank has written its files (RNG states, shards)
        if self.args.should_save:
            checkpointing.write_marker(staged, self.state.global_step)
            checkpointing.publish(staged, final)
            with contextlib.suppress(OSError):
                os.rmdir(staging_root)  # only when empty: the next save recreates it
            from transformers.trainer_utils import rotate_checkpoints

            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=False,
            )
        self.accelerator.wait_for_everyone()

    # Upstream pickles the training arguments (`training_args.bin`) and saves only `processing_class`; here they
    # are JSON, and the full processor is saved too when `processing_class` is only its tokenizer (reward model).
    # Upstream also saves NaN/inf weights without a word (a diverged run then exits 0); every save of weights, a
    # checkpoint's or the final one, comes through here, so this is where they are refused.
    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        weights = state_dict if state_dict is not None else self.accelerator.unwrap_model(self.model).state_dict()
        where = output_dir if self._staging_root is None else f"checkpoint-{self.state.global_step}"
        checkpointing.check_finite(weights, f"{where} (step {self.state.global_step})", self.args.output_dir)
        super()._save(output_dir, state_dict)
        if not self.args.should_save:
            return
        pickled = os.path.join(output_dir, "training_args.bin")
        if os.path.isfile(pickled):
            os.remove(pickled)  # replaced by JSON: a checkpoint holds no pickle
            with open(os.path.join(output_dir, checkpointing.TRAINING_ARGS_NAME), "w", encoding="utf-8") as f:
                f.write(self.args.to_json_string())
        processor = getattr(self, "openmind_processor", None)
        if processor is not None:
            processor.save_pretrained(output_dir)

    # Upstream writes the optimizer and scheduler with `torch.save` (pickles); here safetensors + JSON.
    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if not _plain_state(self):
            return super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            os.makedirs(output_dir, exist_ok=True)
            checkpointing.save_optimizer_state(self.optimizer.state_dict(), output_dir)
            checkpointing.write_json(
                os.path.join(output_dir, checkpointing.SCHEDULER_NAME), self.lr_scheduler.state_dict()
            )

    # The reading side of the above. GRPOTrainer's own override of this method also restores its adaptive-entropy
    # controller; ours replaces the whole chain for our format, so it restores those two attributes itself.
    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is None or not os.path.isfile(os.path.join(checkpoint, checkpointing.OPTIMIZER_META)):
            return super()._load_optimizer_and_scheduler(checkpoint)
        self.optimizer.load_state_dict(checkpointing.load_optimizer_state(checkpoint, device=self.args.device))
        with open(os.path.join(checkpoint, checkpointing.SCHEDULER_NAME), encoding="utf-8") as f:
            self.lr_scheduler.load_state_dict(json.load(f))
        entropy = os.path.join(checkpoint, "entropy_ctrl_state.json")
        if getattr(self, "use_adaptive_entropy", False) and os.path.isfile(entropy):
            with open(entropy, encoding="utf-8") as f:
                state = json.load(f)
            self.entropy_coef, self._last_world_entropy = state["entropy_coef"], state["last_world_entropy"]

    # Upstream pickles the grad scaler state.
    def _save_scaler(self, output_dir: str) -> None:
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is None or not _plain_state(self):
            return super()._save_scaler(output_dir)
        if self.args.should_save:
            checkpointing.write_json(os.path.join(output_dir, checkpointing.SCALER_NAME), scaler.state_dict())

    def _load_scaler(self, checkpoint: str | None) -> None:
        path = os.path.join(checkpoint, checkpointing.SCALER_NAME) if checkpoint else None
        if path is None or not os.path.isfile(path):
            return super()._load_scaler(checkpoint)
        with open(path, encoding="utf-8") as f:
            self.accelerator.scaler.load_state_dict(json.load(f))

    def _rng_stem(self, folder: str) -> str:
        name = "rng_state" if self.args.world_size <= 1 else f"rng_state_{self.args.process_index}"
        return os.path.join(folder, name)

    # Upstream pickles the RNG states (`rng_state.pth`); here safetensors + JSON.
    def _save_rng_state(self, output_dir: str) -> None:
        if not _plain_state(self):
            return super()._save_rng_state(output_dir)
        os.makedirs(output_dir, exist_ok=True)
        checkpointing.save_rng_state(self._rng_stem(output_dir))

    def _load_rng_state(self, checkpoint: str | None) -> None:
        if checkpoint is None or not os.path.isfile(self._rng_stem(checkpoint) + ".json"):
            return super()._load_rng_state(checkpoint)
        checkpointing.load_rng_state(self._rng_stem(checkpoint))

    # Upstream loads full weights with `strict=False` (LLaVA-style checkpoints then silently match nothing).
    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        from peft import PeftModel

        model = model if model is not None else self.model
        if isinstance(model, PeftModel) or not _plain_state(self):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        checkpointing.load_weights_strictly(model, resume_from_checkpoint)


# ------------------------------------------------------------------------------------------------ reward model


class RewardDatasetHook:
    """`RewardTrainer` tokenizes the text of every pair up front in `__init__`, with no option to skip it (unlike
    `SFTConfig.dataset_kwargs["skip_prepare_dataset"]`); our rows are indices and the collator renders, tokenizes and
    processes the media per batch."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset


# ------------------------------------------------------------------------------------------------ GRPO


def _install_ref_model(trainer, ref_model, beta: float) -> None:
    """Installs an in-memory reference policy the way `GRPOTrainer.__init__` installs the one it loads itself."""
    from trl.models import prepare_deepspeed, prepare_fsdp
    from trl.trainer.utils import add_fused_lm_head, disable_dropout_in_model

    trainer.beta = beta
    ref_model.eval().requires_grad_(False)
    if trainer.args.disable_dropout:
        disable_dropout_in_model(ref_model)
    add_fused_lm_head(
        ref_model, temperature=trainer.temperature, cast_lm_head_to_fp32=trainer.args.cast_lm_head_to_fp32
    )
    if trainer.is_deepspeed_enabled:
        trainer.ref_model = prepare_deepspeed(ref_model, trainer.accelerator)
    elif trainer.is_fsdp_enabled:
        trainer.ref_model = prepare_fsdp(ref_model, trainer.accelerator)
    else:
        trainer.ref_model = trainer.accelerator.prepare_model(ref_model, evaluation_mode=True)


def concat_media(rows: list[dict], device=None) -> dict:
    """The media tensors of `rows`, concatenated per key in row order (the order of placeholders in the batch)."""
    fields = {}
    for key in _MEDIA_KEYS:
        pieces = [m[key] for m in rows if key in m]
        if pieces:
            fields[key] = torch.cat(pieces) if device is None else torch.cat(pieces).to(device)
    return fields


class GRPOMediaHooks:
    """
    `GRPOTrainer` re-runs the processor on prompt text without audio, and keeps media only through its own
    image-model code paths. These hooks carry each prompt's media (from `encode_prompts`, defined by the trainer)
    with its row through generation, the old-policy / reference log-probs and the loss forward.

    Args (keyword, on top of GRPOTrainer's):
        ref_model (`PreTrainedModel`, *optional*): an in-memory reference policy.
    """

    def __init__(self, *args, ref_model=None, **kwargs):
        self._batch_media: list[dict] | None = None  # media of the rows being scored (generation round)
        self._loss_media: list[dict] | None = None  # media of the rows in the current loss forward
        config = kwargs["args"]
        beta = config.beta
        # GRPOTrainer takes no `ref_model` argument: it reloads the reference from the policy's path, which an
        # in-memory model (a preset, a model composed from towers) does not have. So it is told beta=0 while it
        # builds (it loads nothing), and the reference is then installed the way it installs its own.
        explicit_ref = ref_model is not None and beta != 0.0
        if explicit_ref:
            config.beta = 0.0
        try:
            super().__init__(*args, **kwargs)
        finally:
            config.beta = beta
        if explicit_ref:
            _install_ref_model(self, ref_model, beta)

    # Upstream turns rows into prompts + processor inputs itself (text only for audio); ours are store indices.
    def _generate_and_score_completions(self, inputs):
        # TRL's sampler repeats each prompt `num_generations` times in a row: read, decode and encode it once.
        indices = [int(row["index"]) for row in inputs]
        unique = list(dict.fromkeys(indices))
        loaded = {i: self.store[i] for i in unique}
        prompt_ids, encoded = self.encode_prompts([loaded[i] for i in unique])
        by_index = {i: {**m, "_prompt_ids": ids} for i, ids, m in zip(unique, prompt_ids, encoded)}
        samples = [loaded[i] for i in indices]
        media = [dict(by_index[i]) for i in indices]  # one dict per row (the tensors are shared, never written)
        rows = [
            {"prompt": s["prompt"], "answer": s.get("answer"), "task": s.get("task"), "openmind_sample": s}
            for s in samples
        ]
        self._batch_media = media
        try:
            output = super()._generate_and_score_completions(rows)
        finally:
            self._batch_media = None
        output["media"] = media  # split and shuffled with the other per-row fields by TRL
        return output

    # Upstream re-tokenizes the prompt text (dropping audio); ours were encoded with their media above.
    def _tokenize_prompts(self, prompts: list):
        media = self._batch_media
        if media is None or len(media) != len(prompts):
            raise RuntimeError("OpenMindGRPOTrainer: prompts arrived without their media; this is a bug.")
        return [m["_prompt_ids"] for m in media], None, concat_media(media)

    # The loss forward gets only the tensors TRL knows; the rows' media ride along in `inputs["media"]`.
    def _compute_loss(self, model, inputs):
        self._loss_media = inputs["media"]
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._loss_media = None

    # Upstream passes image-model kwargs only; ours forwards every row's images AND audio, via the model's fused
    # log-prob head.
    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **vision_kwargs,
    ):
        stray = [k for k, v in vision_kwargs.items() if v is not None and k != "num_images"]
        if stray:
            raise RuntimeError(f"OpenMindGRPOTrainer: TRL passed {stray}; media must come from the rows.")
        media = self._loss_media if self._loss_media is not None else self._batch_media
        if media is None or len(media) != input_ids.size(0):
            raise RuntimeError(
                f"OpenMindGRPOTrainer: {input_ids.size(0)} sequences but media for "
                f"{None if media is None else len(media)} rows; media and rows went out of step."
            )
        return self.completion_logps(
            model, input_ids, attention_mask, media, logits_to_keep, batch_size, compute_entropy, compute_aux_loss
        )


__all__ = [
    "TESTED_VERSIONS",
    "UPSTREAM_SIGNATURES",
    "CheckpointHooks",
    "GRPOMediaHooks",
    "RewardDatasetHook",
    "check_versions",
    "untested_versions",
]
