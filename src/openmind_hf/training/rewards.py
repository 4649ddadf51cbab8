"""GRPO reward functions by name, and a trained OpenMind reward model used as one of them.

Names: `accuracy` (the answer after `</think>` equals the row's `answer`, ignoring case, spaces and a final
period), `think_format` (the config name of `evaluation.rewards.thinking_format_reward`: one well-formed `<think>`
block then an answer), and every reward of
`openmind_hf.evaluation.rewards` (`vqa`, `gsm8k`, `math`, `code`, `thinking_format`, ...), or your own as
`package.module:function` (TRL's signature: `f(completions, **columns) -> list[float]`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

_NORMALIZE = re.compile(r"[\s.!]+$|^\s+")


def _normalize(text: str) -> str:
    return _NORMALIZE.sub("", str(text)).strip().lower()


def _text(completion) -> str:
    from ..evaluation.rewards import completion_to_text

    return completion_to_text(completion)


def accuracy_reward(completions: Sequence, answer: Sequence[str] | None = None, **kwargs) -> list[float]:
    """1.0 when the answer (after `</think>`; 0 if the block never closes) equals the row's `answer` column."""
    from ..evaluation.thinking import split_thinking

    if answer is None:
        raise KeyError("accuracy reward needs an `answer` column (metadata.answer, or the reference assistant turn).")
    scores = []
    for completion, reference in zip(completions, answer):
        split = split_thinking(_text(completion))
        scores.append(float(split.terminated and _normalize(split.answer) == _normalize(reference)))
    return scores


# Names the configs use for rewards that live in `evaluation.rewards` under another name.
_CONFIG_NAMES = {"think_format": "thinking_format"}


class RewardModelReward:
    r"""
    A trained OpenMind reward model (`openmind train --stage reward`) as a GRPO reward function: scores
    prompt + completion WITH the prompt's media (TRL's built-in reward-model path would tokenize text only).

    Args:
        path (`str`): the reward model directory.
        device (`str`, *optional*): where to run it (default: CUDA when available).
    """

    def __init__(self, path: str, device: str | None = None):
        from transformers import AutoModelForSequenceClassification, AutoProcessor

        import openmind_hf  # noqa: F401

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForSequenceClassification.from_pretrained(path).to(self.device).eval()
        self.processor = AutoProcessor.from_pretrained(path)
        self.__name__ = "reward_model"

    @torch.no_grad()
    def __call__(self, completions: Sequence, openmind_sample: Sequence[dict], **kwargs) -> list[float]:
        from .collators import _media, _render

        texts = [
            _render(self.processor, s["prompt"] + [{"role": "assistant", "content": _text(c)}], False, False)
            for s, c in zip(openmind_sample, completions)
        ]
        images, audios, videos = _media(list(openmind_sample))
        batch = self.processor(
            images=images,
            audio=audios,
            videos=videos,
            text=texts,
            padding=True,
            padding_side="right",
            return_tensors="pt",
        )
        batch = {k: v.to(self.device) for k, v in batch.items()}
        return self.model(**batch).logits.squeeze(-1).float().cpu().tolist()


def get_reward_functions(names: Sequence[str], reward_model: str | None = None) -> list:
    """
    The reward callables for `--reward_funcs` names (+ the reward model when given).

    Args:
        names (`Sequence[str]`): `accuracy`, `think_format`, an `evaluation.rewards` name, or `package.module:function`.
        reward_model (`str`, *optional*): a trained OpenMind reward model directory.
    """
    funcs = []
    for name in names:
        name = _CONFIG_NAMES.get(name, name)
        if name == "accuracy":
            funcs.append(accuracy_reward)
        elif ":" in name:  # "package.module:function", a reward of your own
            import importlib

            module, _, attribute = name.partition(":")
            funcs.append(getattr(importlib.import_module(module), attribute))
        else:
            from ..evaluation.rewards import get_reward_function

            funcs.append(get_reward_function(name))
    if reward_model is not None:
        funcs.append(RewardModelReward(reward_model))
    if not funcs:
        raise ValueError("GRPO needs at least one reward: --reward_funcs accuracy think_format, or --reward_model.")
    return funcs


__all__ = ["RewardModelReward", "accuracy_reward", "get_reward_functions"]
