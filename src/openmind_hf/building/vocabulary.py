"""Giving a tokenizer and a language model the OpenMind tokens: media placeholders and thinking markers.

Used when a model is composed from pretrained parts ([`model_from_components`]) and when a LLaVA checkpoint is
converted (`openmind_hf.export.convert_llava`).
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

MEDIA_TOKENS = ("<image>", "<audio>", "<video>")
THINK_TOKENS = ("<think>", "</think>")


def add_openmind_tokens(tokenizer) -> None:
    """Adds the media placeholders (special) and the thinking markers (plain added tokens, so they survive
    `decode(skip_special_tokens=True)`) to a tokenizer, in place, when missing."""
    vocab = tokenizer.get_vocab()
    media = [t for t in MEDIA_TOKENS if t not in vocab]
    if media:
        tokenizer.add_special_tokens({"additional_special_tokens": media}, replace_extra_special_tokens=False)
    think = [t for t in THINK_TOKENS if t not in vocab]
    if think:
        tokenizer.add_tokens(think)


def resize_with_mean_rows(model: PreTrainedModel, new_vocab_size: int) -> None:
    """Grows the vocabulary; new embedding rows (and head rows, when untied) are exactly the mean of the old rows,
    so new tokens start neutral and never win an argmax over the original vocabulary."""
    old = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(new_vocab_size, mean_resizing=False)
    with torch.no_grad():
        embed = model.get_input_embeddings().weight  # [V, D]
        embed[old:] = embed[:old].mean(dim=0)
        head = model.get_output_embeddings()
        if head is not None and head.weight.data_ptr() != embed.data_ptr():
            head.weight[old:] = head.weight[:old].mean(dim=0)


__all__ = ["MEDIA_TOKENS", "THINK_TOKENS", "add_openmind_tokens", "resize_with_mean_rows"]
