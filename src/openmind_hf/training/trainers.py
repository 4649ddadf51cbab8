"""The stock TRL trainers with what an image + audio model needs, and nothing else.

Every trainer here adds, through `OpenMindTrainerMixin`:

- safe checkpoints and exact resume (`SafeCheckpointMixin`, see `checkpointing.py`);
- per-tower learning rates (optimizer parameter groups);
- an exact per-step loss history (`loss_history.jsonl`) and the full processor saved with every checkpoint.

And per trainer:

- `OpenMindSFTTrainer`: our collator (media + assistant-only labels + packing) and the model's own loss, which runs
  the LM head on labelled positions only (TRL's fused head scores every position on CPU, ~2x slower there).
- `OpenMindDPOTrainer`: our preference collator, which puts audio next to images in the batch.
- `OpenMindRewardTrainer`: batches rendered on the fly with their media (TRL tokenizes text only up front).
- `OpenMindGRPOTrainer`: keeps each prompt's media with its row through TRL's shuffle/split, and feeds them to
  generation, the old-policy and reference log-probs, and the loss forward (TRL re-runs the processor without audio
  for those, and drops audio-only prompts' media altogether).
"""

from __future__ import annotations

import json
import logging
import os

import torch
from transformers import Trainer, TrainerCallback
from trl import DPOTrainer, GRPOTrainer, RewardTrainer, SFTTrainer

from ..data.formats import messages_with_media
from .checkpointing import SafeCheckpointMixin
from .model_setup import tower_of

logger = logging.getLogger(__name__)

LOSS_HISTORY = "loss_history.jsonl"


def unwrap_openmind(model):
    """The OpenMind `PreTrainedModel` inside DDP / PEFT wrappers."""
    model = getattr(model, "module", model)
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


class LossHistoryCallback(TrainerCallback):
    """Writes `{"step", "loss", "learning_rate"}` per optimizer step to `output_dir/loss_history.jsonl` (main process).

    The loss is the exact sum of the micro-batch losses `training_step` returned (what `Trainer` logs, unrounded).
    On resume, entries after the resumed step (written by the interrupted run) are dropped first, so the file always
    reads as one uninterrupted run.
    """

    def __init__(self, trainer):
        self.trainer = trainer

    def _path(self, args) -> str:
        return os.path.join(args.output_dir, LOSS_HISTORY)

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        path = self._path(args)
        os.makedirs(args.output_dir, exist_ok=True)
        kept = []
        if state.global_step > 0 and os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                kept = [line for line in f if line.strip() and json.loads(line)["step"] <= state.global_step]
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(kept)

    def on_step_end(self, args, state, control, **kwargs):
        losses = self.trainer._openmind_micro_losses
        self.trainer._openmind_micro_losses = []
        if not state.is_world_process_zero or not losses:
            return
        lrs = [group["lr"] for group in self.trainer.optimizer.param_groups] if self.trainer.optimizer else []
        record = {
            "step": state.global_step,
            "loss": float(torch.stack(losses).sum()),
            "learning_rate": lrs[:1] and lrs[0],
        }
        with open(self._path(args), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


class OpenMindTrainerMixin(SafeCheckpointMixin):
    """Shared by every OpenMind trainer (see the module docstring).

    Args (keyword, on top of the TRL trainer's):
        tower_lrs (`dict[str, float]`, *optional*): learning rate per tower (`vision`, `audio`, `projectors`, `llm`);
            towers not listed use `args.learning_rate`.
        processor (`OpenMindProcessor`, *optional*): saved with every checkpoint when the trainer's
            `processing_class` is only its tokenizer (reward model).
    """

    def __init__(self, *args, tower_lrs: dict[str, float] | None = None, processor=None, **kwargs):
        self.tower_lrs = {k: v for k, v in (tower_lrs or {}).items() if v is not None}
        self.openmind_processor = processor
        self._openmind_micro_losses: list[torch.Tensor] = []
        super().__init__(*args, **kwargs)
        self.add_callback(LossHistoryCallback(self))

    def training_step(self, *args, **kwargs):
        loss = super().training_step(*args, **kwargs)
        self._openmind_micro_losses.append(loss.detach().float().cpu())
        return loss

    def create_optimizer(self, model=None):
        if not self.tower_lrs or self.optimizer is not None:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(model))
        groups: dict[tuple, dict] = {}
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            tower = tower_of(name)
            lr = self.tower_lrs.get(tower, self.args.learning_rate)
            weight_decay = self.args.weight_decay if name in decay else 0.0
            group = groups.setdefault((tower, weight_decay), {"params": [], "lr": lr, "weight_decay": weight_decay})
            group["params"].append(parameter)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        optimizer_kwargs = {k: v for k, v in optimizer_kwargs.items() if k != "lr"}
        self.optimizer = optimizer_cls(list(groups.values()), **optimizer_kwargs)
        for (tower, weight_decay), group in groups.items():
            logger.info(
                "optimizer group %s (weight decay %s): lr %g, %d tensors",
                tower,
                weight_decay,
                group["lr"],
                len(group["params"]),
            )
        return self.optimizer

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict)
        if self.openmind_processor is not None and self.args.should_save:
            self.openmind_processor.save_pretrained(output_dir if output_dir is not None else self.args.output_dir)


class OpenMindSFTTrainer(OpenMindTrainerMixin, SFTTrainer):
    """TRL `SFTTrainer` fed by our collator; the loss is the model's labelled-positions loss."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        unwrap_openmind(self.model).loss_only_when_labelled = True  # labels given -> loss only, no [B, T, V] logits

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Our batches may be packed: no attention mask, and no KV cache so that transformers derives per-sample masks
        # from position_ids.
        inputs["use_cache"] = False
        return Trainer.compute_loss(
            self, model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )


class OpenMindDPOTrainer(OpenMindTrainerMixin, DPOTrainer):
    """TRL `DPOTrainer` with our preference collator (every modality of the prompt, for both sides of a pair)."""


class OpenMindRewardTrainer(OpenMindTrainerMixin, RewardTrainer):
    """TRL `RewardTrainer` with batches rendered and tokenized on the fly by our reward collator (with media)."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset  # rows are indices; the collator renders, tokenizes and processes media per batch


class OpenMindGRPOTrainer(OpenMindTrainerMixin, GRPOTrainer):
    r"""
    TRL `GRPOTrainer` for image + audio prompts.

    Rows are `{"index": i}`; `store[i]` gives the decoded sample (`prompt`, `answer`, `task`, media). Each prompt is
    processed once per generation round; its media tensors travel with its row as an entry of the `media` list, which
    TRL's shuffle and split keep aligned with the other per-row fields, and every forward (generation, old policy,
    reference, loss) takes them from there.

    Args (keyword, on top of GRPOTrainer's):
        store: the map-style dataset of prompt samples.
    """

    def __init__(self, *args, store=None, ref_model=None, **kwargs):
        if store is None:
            raise ValueError("OpenMindGRPOTrainer needs `store` (the dataset of decoded prompt samples).")
        self.store = store
        self._batch_media: list[dict] | None = None  # media of the rows being scored (generation round)
        self._loss_media: list[dict] | None = None  # media of the rows in the current loss forward
        config = kwargs["args"]
        beta = config.beta
        # TRL builds the reference policy by reloading the model from its path; an in-memory model (a preset, a
        # model composed from towers) has none. With an explicit `ref_model`, TRL is told beta=0 while it builds
        # (so it loads nothing) and the reference is installed the way TRL installs its own.
        explicit_ref = ref_model is not None and beta != 0.0
        if explicit_ref:
            config.beta = 0.0
        try:
            super().__init__(*args, **kwargs)
        finally:
            config.beta = beta
        if explicit_ref:
            self._install_ref_model(ref_model, beta)

    def _install_ref_model(self, ref_model, beta: float) -> None:
        from trl.models import prepare_deepspeed, prepare_fsdp
        from trl.trainer.utils import add_fused_lm_head, disable_dropout_in_model

        self.beta = beta
        ref_model.eval().requires_grad_(False)
        if self.args.disable_dropout:
            disable_dropout_in_model(ref_model)
        add_fused_lm_head(ref_model, temperature=self.temperature, cast_lm_head_to_fp32=self.args.cast_lm_head_to_fp32)
        if self.is_deepspeed_enabled:
            self.ref_model = prepare_deepspeed(ref_model, self.accelerator)
        elif self.is_fsdp_enabled:
            self.ref_model = prepare_fsdp(ref_model, self.accelerator)
        else:
            self.ref_model = self.accelerator.prepare_model(ref_model, evaluation_mode=True)

    # -- one generation round
    def _encode_prompts(self, samples: list[dict]) -> tuple[list[list[int]], list[dict]]:
        processor = self.processing_class
        conversations = [messages_with_media({**s, "messages": s["prompt"]}) for s in samples]
        encoded = processor.apply_chat_template(
            conversations,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            processor_kwargs={"padding": True, "padding_side": "right"},
            **self.chat_template_kwargs,
        )
        lengths = encoded["attention_mask"].sum(-1).tolist()
        prompt_ids = [encoded["input_ids"][i, :n].tolist() for i, n in enumerate(lengths)]
        # Split the batch's media tensors back into per-row pieces (images and clips are in row order).
        media = [{} for _ in samples]
        for key, per_row in (
            ("pixel_values", [len(s.get("images") or []) for s in samples]),
            ("input_features", [len(s.get("audios") or []) for s in samples]),
            ("feature_attention_mask", [len(s.get("audios") or []) for s in samples]),
        ):
            if key in encoded:
                for row, piece in zip(media, torch.split(encoded[key], per_row)):
                    if piece.shape[0]:
                        row[key] = piece
        return prompt_ids, media

    def _generate_and_score_completions(self, inputs):
        samples = [self.store[int(row["index"])] for row in inputs]
        prompt_ids, media = self._encode_prompts(samples)
        for row_media, ids in zip(media, prompt_ids):
            row_media["_prompt_ids"] = ids
        rows = [
            {"prompt": s["prompt"], "answer": s.get("answer"), "task": s.get("task"), "openmind_sample": s}
            for s in samples
        ]
        self._batch_media = media
        try:
            output = super()._generate_and_score_completions(rows)
        finally:
            self._batch_media = None
        output["media"] = media
        return output

    def _tokenize_prompts(self, prompts: list):
        media = self._batch_media
        if media is None or len(media) != len(prompts):
            raise RuntimeError("OpenMindGRPOTrainer: prompts arrived without their media; this is a bug.")
        fields = {}
        for key in ("pixel_values", "input_features", "feature_attention_mask"):
            pieces = [m[key] for m in media if key in m]
            if pieces:
                fields[key] = torch.cat(pieces)
        return [m["_prompt_ids"] for m in media], None, fields

    # -- forwards that score completions
    def _compute_loss(self, model, inputs):
        self._loss_media = inputs["media"]
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._loss_media = None

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
        device = input_ids.device
        batch_size = batch_size or input_ids.size(0)
        all_logps, all_entropies, all_aux = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            ids, mask = input_ids[start:end], attention_mask[start:end]
            model_inputs = {"input_ids": ids, "attention_mask": mask}
            for key in ("pixel_values", "input_features", "feature_attention_mask"):
                pieces = [m[key] for m in media[start:end] if key in m]
                if pieces:
                    model_inputs[key] = torch.cat(pieces).to(device)
            if compute_aux_loss:
                model_inputs["output_router_logits"] = True
            labels = ids.masked_fill(mask == 0, -100)
            labels[:, :-logits_to_keep] = -100  # only the completion is scored
            with self.accelerator.autocast():
                outputs = model(**model_inputs, labels=labels, fused_lm_head=True)
            all_logps.append(outputs.log_probs[:, -logits_to_keep:])
            if compute_entropy:
                all_entropies.append(outputs.entropy[:, -logits_to_keep:])
            if compute_aux_loss:
                all_aux.append(outputs.aux_loss)
        logps = torch.cat(all_logps)
        entropies = torch.cat(all_entropies) if compute_entropy else None
        aux_loss = torch.stack(all_aux).mean() if compute_aux_loss else None
        return logps, entropies, aux_loss


__all__ = [
    "LOSS_HISTORY",
    "LossHistoryCallback",
    "OpenMindDPOTrainer",
    "OpenMindGRPOTrainer",
    "OpenMindRewardTrainer",
    "OpenMindSFTTrainer",
    "OpenMindTrainerMixin",
    "unwrap_openmind",
]
