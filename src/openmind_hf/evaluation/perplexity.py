"""Perplexity of a model on a text or multimodal set, counting only the tokens the model is asked to predict.

A sample is either text (`{"text": ...}`, optionally with `"image"`/`"images"` for the pretraining format
`{"text": "<image>caption", "image": path}`: every token after the first is scored) or a chat
(`{"messages": [...]}`: only assistant tokens are scored, from the chat template's `{% generation %}` markers, so
the prompt is masked). Media placeholders (`<image>`, `<audio>`, `<video>`, which stand for encoder features, not
text) and padding are never scored. Perplexity = exp(total NLL / scored tokens) over the whole set.

Written here because `evaluate`'s perplexity takes text only and scores every token.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image


def _placeholder_ids(processor) -> list[int]:
    ids = [getattr(processor, name, None) for name in ("image_token_id", "audio_token_id", "video_token_id")]
    return [i for i in ids if i is not None]


def _images(sample: dict) -> list:
    images = sample.get("images") or ([sample["image"]] if sample.get("image") is not None else [])
    return [Image.open(i).convert("RGB") if isinstance(i, (str, os.PathLike)) else i for i in images]


def _encode(processor, batch: Sequence[dict], enable_thinking: bool):
    """Tokenise one batch (right-padded); returns model inputs and the [B, T] mask of tokens to score."""
    if all("text" in s and "messages" not in s for s in batch):
        texts, images = [s["text"] for s in batch], [_images(s) for s in batch]
        if any(images):  # pretraining-style `{"text": "<image>...", "image": ...}`: the processor expands <image>
            inputs = processor(text=texts, images=images, padding=True, return_tensors="pt")
        else:
            inputs = processor.tokenizer(texts, padding=True, return_tensors="pt")
        scored = inputs["attention_mask"].bool()
    elif all("messages" in s for s in batch):
        inputs = processor.apply_chat_template(
            [s["messages"] for s in batch],
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            return_assistant_tokens_mask=True,
            enable_thinking=enable_thinking,
            processor_kwargs={"padding": True},
        )
        scored = inputs.pop("assistant_masks").bool() & inputs["attention_mask"].bool()
        if not scored.any(dim=1).all():
            row = int((~scored.any(dim=1)).nonzero()[0])
            raise ValueError(f"Perplexity sample {row} of its batch has no assistant tokens to score: add an answer.")
    else:
        raise ValueError("Every perplexity sample needs a `text` or a `messages` key.")
    for token_id in _placeholder_ids(processor):
        scored &= inputs["input_ids"] != token_id
    return inputs, scored


@torch.no_grad()
def _batch_nll(model, inputs, scored: torch.Tensor) -> tuple[float, int]:
    targets = scored[:, 1:]  # token t is predicted from positions < t: [B, T-1]
    labels = inputs["input_ids"][:, 1:][targets]  # [N]
    if hasattr(model, "model") and hasattr(model, "lm_head"):
        # Run the head on the scored positions only, never materialising [B, T, V] logits.
        hidden = model.model(**inputs).last_hidden_state[:, :-1][targets]  # [N, D]
        logits = model.lm_head(hidden)
    else:
        logits = model(**inputs).logits[:, :-1][targets]
    return float(F.cross_entropy(logits.float(), labels, reduction="sum")), int(labels.numel())


def perplexity(
    model,
    processor,
    samples: Sequence[dict],
    batch_size: int = 8,
    enable_thinking: bool = False,
    progress: bool = False,
) -> dict:
    """Token-weighted perplexity of `model` on `samples`.

    Args:
        model: an OpenMind (or any causal LM) model in eval mode.
        processor: its processor (for chats) or anything with a `.tokenizer`.
        samples (sequence of `dict`): `{"text": str}` (+ `"image"` / `"images"`: PIL images or paths) or
            `{"messages": [...]}` (media blocks hold PIL images, audio arrays or file paths); kinds may be mixed.
        batch_size (`int`, *optional*, defaults to 8): samples per forward pass.
        enable_thinking (`bool`, *optional*, defaults to `False`): chat template switch for `messages` samples.

    Returns:
        `dict` with `perplexity`, `nll_per_token` and `num_tokens`.
    """
    if not samples:
        raise ValueError("perplexity needs at least one sample.")
    tokenizer = processor.tokenizer
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "right"
    total_nll, total_tokens = 0.0, 0
    # Text and chat samples are tokenised differently: batch each kind on its own.
    texts = [s for s in samples if "messages" not in s]
    chats = [s for s in samples if "messages" in s]
    batches = [group[i : i + batch_size] for group in (texts, chats) for i in range(0, len(group), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="perplexity", unit="batch")
    try:
        for batch in batches:
            inputs, scored = _encode(processor, batch, enable_thinking)
            inputs = inputs.to(model.device)
            inputs = {k: v.to(model.dtype) if torch.is_floating_point(v) else v for k, v in inputs.items()}
            nll, count = _batch_nll(model, inputs, scored.to(model.device))
            total_nll += nll
            total_tokens += count
    finally:
        tokenizer.padding_side = padding_side
    if total_tokens == 0:
        raise ValueError("No token was scored: every sample is empty or made only of prompt and placeholders.")
    mean = total_nll / total_tokens
    return {"perplexity": math.exp(mean), "nll_per_token": mean, "num_tokens": total_tokens}


__all__ = ["perplexity"]
