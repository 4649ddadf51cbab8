"""Collators that put every modality into the batch for preference pairs (DPO) and reward pairs, plus a cache for
the chat collator. Each takes decoded samples (see `training/data.py`) and calls the OpenMind processor once per
batch, so images AND audio reach the model (TRL's stock vision collators pass images only). Chats and captions use
`openmind_hf.processing.collator.OpenMindCollator` (assistant-only labels, length policy, packing).
"""

from __future__ import annotations

import torch

from ..data.errors import DataError
from ..processing.collator import OpenMindCollator


def _media(samples: list[dict]) -> tuple[list | None, list | None, list | None]:
    """Per-sample image lists (kept nested: the processor takes `[]` for samples without one), and flat audio and
    video lists in placeholder order."""
    images = [list(s.get("images") or []) for s in samples]
    audios = [a for s in samples for a in s.get("audios") or []]
    videos = [v for s in samples for v in s.get("videos") or []]
    return (images if any(images) else None), (audios or None), (videos or None)


class CachedChatCollator(OpenMindCollator):
    """`OpenMindCollator` that keeps each sample's encoding (token ids, labels, media tensors) after its first batch:
    later epochs skip the chat template, tokenizer, image processor and feature extractor, and (through
    `IndexedCollator`, which asks `is_cached` first) reading and decoding the media. Samples are keyed by their
    `cache_key` (`IndexedCollator` sets `(store, index)`, so a train and an eval record sharing an id never mix),
    else by `id`. Memory grows with the dataset (~45 KB per tiny-preset sample); meant for multi-epoch runs on small
    data."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._cache: dict = {}

    def is_cached(self, key) -> bool:
        return key in self._cache

    def _encode_all(self, samples: list) -> list[dict]:
        samples = [s for s in samples if s is not None]
        missing = [s for s in samples if _cache_key(s) not in self._cache]
        for sample, item in zip(missing, self._encode_each(missing)):
            if item is not None:  # a rejected sample is not cached: it is retried (and reported) each epoch
                self._cache[_cache_key(sample)] = item
        return [self._cache[_cache_key(s)] for s in samples if _cache_key(s) in self._cache]


def _cache_key(sample: dict):
    return sample["cache_key"] if "cache_key" in sample else sample.get("id")


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


__all__ = ["CachedChatCollator", "PreferenceCollator", "RewardCollator"]
