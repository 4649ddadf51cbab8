"""Collators that put every modality into the batch: chats (SFT / pretraining), preference pairs (DPO) and
reward pairs. Each takes decoded canonical samples (see `training/data.py`) and calls the OpenMind processor once
per batch, so images AND audio reach the model (TRL's stock vision collators pass images only).
"""

from __future__ import annotations

import torch

from ..data.errors import DataError
from ..data.formats import messages_with_media


def _media(samples: list[dict]) -> tuple[list | None, list | None, list | None]:
    """Per-sample image lists (kept nested: the processor takes `[]` for samples without one), and flat audio and
    video lists in placeholder order."""
    images = [list(s.get("images") or []) for s in samples]
    audios = [a for s in samples for a in s.get("audios") or []]
    videos = [v for s in samples for v in s.get("videos") or []]
    return (images if any(images) else None), (audios or None), (videos or None)


def _placeholder_ids(processor) -> torch.Tensor:
    return torch.tensor([processor.image_token_id, processor.audio_token_id, processor.video_token_id])


def _check_truncation(ids: torch.Tensor, max_length: int, placeholders: torch.Tensor, sample_id: str) -> None:
    """Refuses a cut that would drop media placeholder tokens (the model would then see fewer tokens than features)."""
    if bool(torch.isin(ids[max_length:], placeholders).any()):
        raise DataError(
            f"the sequence has {ids.numel()} tokens and media placeholders after position {max_length}",
            sample_id=sample_id,
            hint="raise --max_length (truncation never cuts into media tokens), or drop the sample",
        )


class ChatCollator:
    r"""
    Chats and captions -> `input_ids`, `attention_mask`, `labels` (assistant tokens only), media tensors.

    Args:
        processor (`OpenMindProcessor`): renders the chat template and expands placeholders.
        max_length (`int`, *optional*): longer samples are cut at the end, never inside media placeholders.
        packing (`bool`, *optional*, defaults to False): one padding-free row per batch, `position_ids` restarting
            at 0 for each sample and no `attention_mask`, so attention stays within each sample.
        enable_thinking (`bool`, *optional*, defaults to False): render assistant turns with their reasoning.
    """

    def __init__(self, processor, max_length: int | None = None, packing: bool = False, enable_thinking: bool = False):
        self.processor, self.max_length, self.packing, self.enable_thinking = (
            processor,
            max_length,
            packing,
            enable_thinking,
        )
        self.pad_token_id = processor.tokenizer.pad_token_id
        self.placeholders = _placeholder_ids(processor)

    def __call__(self, samples: list[dict]) -> dict:
        conversations = [messages_with_media(s) for s in samples]
        batch = self.processor.apply_chat_template(
            conversations,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            return_assistant_tokens_mask=True,
            enable_thinking=self.enable_thinking,
            processor_kwargs={"padding": True, "padding_side": "right"},
        )
        assistant = batch.pop("assistant_masks").bool()
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        rows = []
        for i, sample in enumerate(samples):
            length = int(attention_mask[i].sum())
            ids, labels = input_ids[i, :length], input_ids[i, :length].masked_fill(~assistant[i, :length], -100)
            if self.max_length is not None and length > self.max_length:
                _check_truncation(ids, self.max_length, self.placeholders, str(sample.get("id")))
                ids, labels = ids[: self.max_length], labels[: self.max_length]
            rows.append((ids, labels))
        media = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
        return {**(self._pack(rows) if self.packing else self._pad(rows)), **media}

    def _pad(self, rows) -> dict:
        width = max(ids.numel() for ids, _ in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (ids, lab) in enumerate(rows):
            input_ids[i, : ids.numel()], labels[i, : ids.numel()], attention_mask[i, : ids.numel()] = ids, lab, 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def _pack(self, rows) -> dict:
        # [1, sum(T_i)]; no attention_mask, so transformers builds per-sample causal masks from position_ids.
        # Each sample starts with `<|im_start|>` (unlabelled), so no label crosses a sample boundary.
        return {
            "input_ids": torch.cat([ids for ids, _ in rows])[None],
            "labels": torch.cat([lab for _, lab in rows])[None],
            "position_ids": torch.cat([torch.arange(ids.numel()) for ids, _ in rows])[None],
        }


def _render(processor, messages: list[dict], enable_thinking: bool, add_generation_prompt: bool) -> str:
    return processor.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking
    )


def _completion_text(processor, prompt: list[dict], reply: list[dict], enable_thinking: bool, prompt_text: str) -> str:
    full = _render(processor, prompt + reply, enable_thinking, add_generation_prompt=False)
    if not full.startswith(prompt_text):
        raise ValueError("The chat template does not render the prompt as a prefix of prompt + reply.")
    return full[len(prompt_text) :]


class PreferenceCollator:
    r"""
    DPO pairs -> `[chosen rows; rejected rows]` with `completion_mask`, as TRL's `DPOTrainer` expects, and the media
    of each prompt twice (once per side) in the same processor call, so audio travels with the images.

    Args:
        processor (`OpenMindProcessor`): the model's processor.
        max_length (`int`, *optional*): completions are cut to fit; a prompt longer than this is an error.
        enable_thinking (`bool`, *optional*, defaults to False): how assistant turns are rendered.
    """

    def __init__(self, processor, max_length: int | None = None, enable_thinking: bool = False):
        self.processor, self.max_length, self.enable_thinking = processor, max_length, enable_thinking
        self.tokenizer = processor.tokenizer

    def _prompts(self, samples: list[dict]):
        prompts = [_render(self.processor, s["prompt"], self.enable_thinking, True) for s in samples]
        images, audios, videos = _media(samples)
        encoded = self.processor(
            images=None if images is None else images * 2,
            audio=None if audios is None else audios * 2,
            videos=None if videos is None else videos * 2,
            text=prompts * 2,
            padding=True,
            padding_side="right",
            return_tensors="pt",
        )
        lengths = encoded["attention_mask"].sum(-1)
        prompt_ids = [encoded["input_ids"][i, : lengths[i]] for i in range(len(prompts) * 2)]
        media = {k: v for k, v in encoded.items() if k not in ("input_ids", "attention_mask")}
        return prompts, prompt_ids, media

    def _completions(self, texts: list[str]) -> list[torch.Tensor]:
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [torch.tensor(x, dtype=torch.long) for x in ids]

    def __call__(self, samples: list[dict]) -> dict:
        prompts, prompt_ids, media = self._prompts(samples)
        completions = [
            _completion_text(self.processor, s["prompt"], s[side], self.enable_thinking, p)
            for side in ("chosen", "rejected")
            for s, p in zip(samples, prompts)
        ]
        rows = []
        for i, (p_ids, c_ids) in enumerate(zip(prompt_ids, self._completions(completions))):
            if self.max_length is not None:
                if p_ids.numel() >= self.max_length:
                    sample_id = samples[i % len(samples)].get("id")
                    raise DataError(
                        f"the prompt has {p_ids.numel()} tokens, not fewer than max_length={self.max_length}",
                        sample_id=str(sample_id),
                        hint="raise --max_length (prompts are never cut: they hold the media tokens)",
                    )
                c_ids = c_ids[: self.max_length - p_ids.numel()]
            rows.append((p_ids, c_ids))
        width = max(p.numel() + c.numel() for p, c in rows)
        input_ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        completion_mask = torch.zeros_like(input_ids)
        for i, (p, c) in enumerate(rows):
            n = p.numel() + c.numel()
            input_ids[i, :n] = torch.cat([p, c])
            attention_mask[i, :n] = 1
            completion_mask[i, p.numel() : n] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask, **media}


class RewardCollator(PreferenceCollator):
    r"""
    Reward-model pairs -> `[chosen rows; rejected rows]` (`input_ids`, `attention_mask`, media), as TRL's
    `RewardTrainer` expects (it splits the scores in two halves), right-padded so the score is read at each row's
    last real token.
    """

    def __call__(self, samples: list[dict]) -> dict:
        batch = super().__call__(samples)
        batch.pop("completion_mask")
        return batch


__all__ = ["ChatCollator", "PreferenceCollator", "RewardCollator"]
