"""The stock TRL trainers with what an image + audio model needs, and nothing else.

Every trainer here adds, through `OpenMindTrainerMixin`:

- safe checkpoints and exact resume (`trl_internals.CheckpointHooks`; file formats in `checkpointing.py`);
- per-tower learning rates (optimizer parameter groups);
- an exact per-step loss history (`loss_history.jsonl`) and the full processor saved with every checkpoint.

And per trainer:

- `OpenMindSFTTrainer`: our collator (media + assistant-only labels + packing) and the model's own loss, which runs
  the LM head on labelled positions only (TRL's fused head scores every position on CPU, ~2x slower there);
  `logits_to_keep=1` keeps the forward from also building `[B, T, V]` logits nobody reads.
- `OpenMindDPOTrainer`: our preference collator, which puts audio next to images in the batch.
- `OpenMindRewardTrainer`: batches rendered on the fly with their media (TRL tokenizes text only up front).
- `OpenMindGRPOTrainer`: keeps each prompt's media with its row through TRL's shuffle/split, and feeds them to
  generation, the old-policy and reference log-probs, and the loss forward (TRL re-runs the processor without audio
  for those, and drops audio-only prompts' media altogether).

Every override of a private TRL / `Trainer` method is in `trl_internals.py`; this module overrides public methods only.
"""

from __future__ import annotations

import json
import logging
import os

import torch
from transformers import Trainer, TrainerCallback
from trl import DPOTrainer, GRPOTrainer, RewardTrainer, SFTTrainer

from ..data.formats import messages_with_media
from .checkpointing import remove_staging, resume_checkpoint
from .model_setup import tower_of
from .trl_internals import CheckpointHooks, GRPOMediaHooks, RewardDatasetHook, check_versions, concat_media

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

        The loss is the exact sum of the micro-batch losses `training_step` returned, averaged over the processes (what
    `Trainer` logs, unrounded): each process's loss is its labelled tokens' summed cross-entropy over the GLOBAL count
    of labelled tokens, times the number of processes (transformers' `average_tokens_across_devices`, which DDP /
    ZeRO's gradient averaging undoes), so the mean over processes is the loss of the whole global batch, the same
    number one process would log for it.
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
        if not losses:
            return
        step_loss = torch.stack(losses).sum()  # on the device: the one host sync is `float()` below, on rank 0
        if self.trainer.accelerator.num_processes > 1:  # every process reaches here: a collective is safe
            step_loss = self.trainer.accelerator.reduce(step_loss, "mean")
        if not state.is_world_process_zero:
            return
        lrs = [group["lr"] for group in self.trainer.optimizer.param_groups] if self.trainer.optimizer else []
        record = {
            "step": state.global_step,
            "loss": float(step_loss),
            "learning_rate": lrs[:1] and lrs[0],
        }
        with open(self._path(args), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


class OpenMindTrainerMixin(CheckpointHooks):
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
        check_versions()
        super().__init__(*args, **kwargs)
        self.add_callback(LossHistoryCallback(self))

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """`Trainer.train`, resuming only from a checkpoint that VERIFIES (complete, every file matching its recorded
        sha256): `"latest"`/`True` picks the newest one that does (a fresh start when there is none), a path must;
        pickled state OpenMind did not write needs `--allow_pickled_checkpoint_state`; leftovers of an interrupted save
        are removed."""
        resume = resume_from_checkpoint if resume_from_checkpoint is not None else self.args.resume_from_checkpoint
        allow_pickles = bool(getattr(self.args, "allow_pickled_checkpoint_state", False))
        resolved = self._resolve_resume_once(resume, allow_pickles)
        if self.args.should_save:
            remove_staging(self.args.output_dir)
        self.accelerator.wait_for_everyone()
        if resolved is not None:
            logger.info("Resuming from %s", resolved)
        self.openmind_resumed_from = resolved
        output = super().train(resolved, *args, **kwargs)
        if self.is_deepspeed_enabled:
            # The Trainer registered transformers' global DeepSpeed config, which makes every later `from_config` /
            # `from_pretrained` in this process build under `zero.Init`: a model built on one rank only (the model
            # card's parameter count, checks on rank 0) would then wait in collectives the other ranks never join.
            # The engine and its consolidated save use their own config.
            from transformers.integrations import unset_hf_deepspeed_config

            unset_hf_deepspeed_config()
        return output

    def _resolve_resume_once(self, resume, allow_pickles: bool) -> str | None:
        """`resume_checkpoint` on the main process only (it hashes every file of the checkpoint: once is enough, the
        ranks read the same folder), its answer or its error sent to every rank."""
        if self.accelerator.num_processes == 1:
            return resume_checkpoint(resume, self.args.output_dir, allow_pickles)
        from accelerate.utils import broadcast_object_list

        answer = [None]
        if self.accelerator.is_main_process:
            try:
                answer[0] = ("ok", resume_checkpoint(resume, self.args.output_dir, allow_pickles))
            except Exception as err:  # noqa: BLE001 - every rank raises it: none waits in a collective for the others
                answer[0] = ("error", err)
        broadcast_object_list(answer)
        kind, value = answer[0]
        if kind == "error":
            raise value
        return value

    def create_model_card(self, *args, **kwargs):
        """Does nothing: TRL writes its generic README ("fine-tuned version of [None]") at every checkpoint save;
        `run.finish_run` writes OpenMind's card (`export.model_card.write_model_card`) once the run is summarised."""

    def training_step(self, *args, **kwargs):
        loss = super().training_step(*args, **kwargs)
        self._openmind_micro_losses.append(loss.detach().float())  # no host sync per micro-batch
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


class OpenMindSFTTrainer(OpenMindTrainerMixin, SFTTrainer):
    """TRL `SFTTrainer` fed by our collator; the loss is the model's labelled-positions loss."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Our batches may be packed: no attention mask, and no KV cache so that transformers derives per-sample masks
        # from position_ids.
        inputs["use_cache"] = False
        if not return_outputs:
            inputs["logits_to_keep"] = 1  # the loss reads hidden states; [B, 1, V] logits instead of [B, T, V]
        # `Trainer.compute_loss`, not SFTTrainer's: that one recomputes the loss with TRL's fused head over every
        # position (and its token-accuracy metrics), which our model's labelled-positions loss already replaces.
        return Trainer.compute_loss(
            self, model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )


class OpenMindDPOTrainer(OpenMindTrainerMixin, DPOTrainer):
    """TRL `DPOTrainer` with our preference collator (every modality of the prompt, for both sides of a pair)."""


class OpenMindRewardTrainer(OpenMindTrainerMixin, RewardDatasetHook, RewardTrainer):
    """TRL `RewardTrainer` with batches rendered and tokenized on the fly by our reward collator (with media)."""


class OpenMindGRPOTrainer(OpenMindTrainerMixin, GRPOMediaHooks, GRPOTrainer):
    r"""
    TRL `GRPOTrainer` for image + audio prompts.

    Rows are `{"index": i}`; `store[i]` gives the decoded sample (`prompt`, `answer`, `task`, media). Each prompt is
    processed once per generation round; its media tensors travel with its row as an entry of the `media` list, which
    TRL's shuffle and split keep aligned with the other per-row fields, and every forward (generation, old policy,
    reference, loss) takes them from there (the hooks into TRL are `trl_internals.GRPOMediaHooks`).

    Args (keyword, on top of GRPOTrainer's):
        store (`torch.utils.data.Dataset`): the map-style dataset of prompt samples (`data.PromptStore`).
        ref_model (`PreTrainedModel`, *optional*): a frozen reference policy (needed when `beta != 0` and the policy
            has no checkpoint path TRL could reload it from).
    """

    def __init__(self, *args, store=None, **kwargs):
        if store is None:
            raise ValueError("OpenMindGRPOTrainer needs `store` (the dataset of decoded prompt samples).")
        self.store = store
        super().__init__(*args, **kwargs)

    def encode_prompts(self, samples: list[dict]) -> tuple[list[list[int]], list[dict]]:
        """Prompt token ids per sample and the per-row media tensors (`pixel_values`, `input_features`, ...)."""
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

    def completion_logps(
        self, model, input_ids, attention_mask, media, logits_to_keep, batch_size, compute_entropy, compute_aux_loss
    ):
        """
        Per-token log-probs `[B, logits_to_keep]` of the completions (and entropies, aux loss when asked), in chunks
        of `batch_size` rows, each forward given its rows' media.
        """
        device = input_ids.device
        batch_size = batch_size or input_ids.size(0)
        all_logps, all_entropies, all_aux = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            ids, mask = input_ids[start:end], attention_mask[start:end]
            model_inputs = {"input_ids": ids, "attention_mask": mask, **concat_media(media[start:end], device)}
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
