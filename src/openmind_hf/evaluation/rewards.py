"""The evaluation metrics as TRL reward functions, plus a thinking-format reward.

Every function has TRL's signature, `reward(completions, **kwargs) -> list[float]`: `completions` are strings or
chat-message lists (conversational datasets), and the reference comes from a dataset column that TRL passes as a
keyword argument (`answer` for GSM8K/MATH, `answers` for VQA, `test` + `entry_point` (+ `code_prompt`) for code).
The answer is read after `</think>`; a completion whose thinking block never closes earns 0.

    from openmind_hf.evaluation.rewards import gsm8k_accuracy_reward, thinking_format_reward
    GRPOTrainer(..., reward_funcs=[gsm8k_accuracy_reward, thinking_format_reward])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from .registry import code_pass_rates, get_metric
from .thinking import THINK_CLOSE, THINK_OPEN, is_well_formed_thinking, split_thinking

RewardFunction = Callable[..., list[float]]


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(
        block.get("text", "") for block in content if isinstance(block, dict) and block.get("type") == "text"
    )


def completion_to_text(completion: str | Sequence[dict]) -> str:
    """A completion as plain text: a string as is; a message list as its assistant turns, with any
    `reasoning_content` put back inside `<think>...</think>`."""
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion:
        if message.get("role", "assistant") != "assistant":
            continue
        if message.get("reasoning_content"):
            parts.append(f"{THINK_OPEN}\n{message['reasoning_content']}\n{THINK_CLOSE}\n\n")
        parts.append(_content_text(message.get("content")))
    return "".join(parts)


def _column(kwargs: dict, names: Sequence[str], reward_name: str, size: int) -> list:
    for name in names:
        if name in kwargs and kwargs[name] is not None:
            values = list(kwargs[name])
            if len(values) != size:
                raise ValueError(f"{reward_name}: column {name!r} has {len(values)} values for {size} completions.")
            return values
    given = sorted(k for k in kwargs if k not in ("trainer_state", "log_extra", "log_metric", "completion_ids"))
    raise KeyError(f"{reward_name} needs the dataset column {' or '.join(map(repr, names))}; the dataset has {given}.")


def make_reward_function(metric_name: str, reference_column: str | None = None) -> RewardFunction:
    """Wrap a per-sample metric of the registry as a TRL reward function.

    Args:
        metric_name (`str`): a registered metric with a `sample_score` (e.g. `"gsm8k_accuracy"`).
        reference_column (`str`, *optional*): dataset column holding the reference; defaults to the metric's own.
    """
    metric = get_metric(metric_name)
    if metric.sample_score is None:
        raise ValueError(f"{metric_name} is a corpus-level metric and cannot score single completions.")
    columns = (reference_column,) if reference_column else metric.reference_columns[:1]
    name = f"{metric_name}_reward"

    def reward(completions: Sequence, **kwargs) -> list[float]:
        references = _column(kwargs, columns, name, len(completions))
        scores = []
        for completion, reference in zip(completions, references):
            split = split_thinking(completion_to_text(completion))
            scores.append(float(metric.sample_score(split.answer, reference)) if split.terminated else 0.0)
        return scores

    reward.__name__ = reward.__qualname__ = name
    reward.__doc__ = f"TRL reward: {metric.description}; 0 when the thinking block is not closed."
    return reward


vqa_accuracy_reward = make_reward_function("vqa_accuracy")
textvqa_accuracy_reward = make_reward_function("textvqa_accuracy")
gsm8k_accuracy_reward = make_reward_function("gsm8k_accuracy")
math_accuracy_reward = make_reward_function("math_accuracy")


def code_accuracy_reward(completions: Sequence, **kwargs) -> list[float]:
    """TRL reward: 1.0 when the completion's code passes the row's tests.

    The code runs inside the bubblewrap sandbox; `check(candidate)` runs in a trusted process that calls it through
    literal values only, so the policy cannot forge a pass (see `sandbox.check_candidate`). Without bubblewrap this
    raises `SandboxUnavailableError` rather than returning zeros, unless `sandbox.allow_unsandboxed_code()` was
    called.

    Columns: `test` (a test program defining `check(candidate)`), `entry_point` (the function's name) and,
    optionally, `code_prompt` (the stub the completion continues, e.g. HumanEval's `prompt`).
    """
    size = len(completions)
    tests = _column(kwargs, ("test",), "code_accuracy_reward", size)
    entry_points = _column(kwargs, ("entry_point",), "code_accuracy_reward", size)
    stubs = kwargs.get("code_prompt") or [""] * size
    splits = [split_thinking(completion_to_text(c)) for c in completions]
    problems = [{"test": t, "entry_point": e, "prompt": p or ""} for t, e, p in zip(tests, entry_points, stubs)]
    runnable = [i for i, s in enumerate(splits) if s.terminated and s.answer]
    workers = max(1, min(8, os.cpu_count() or 1))
    passed = code_pass_rates([splits[i].answer for i in runnable], [problems[i] for i in runnable], workers=workers)
    scores = [0.0] * size
    for index, score in zip(runnable, passed):
        scores[index] = score
    return scores


def thinking_format_reward(completions: Sequence, **kwargs) -> list[float]:
    """TRL reward: 1.0 for exactly one well-formed `<think>...</think>` block (non-empty) followed by a
    non-empty answer, else 0.0."""
    return [float(is_well_formed_thinking(completion_to_text(c))) for c in completions]


REWARD_FUNCTIONS: dict[str, RewardFunction] = {
    "vqa": vqa_accuracy_reward,
    "textvqa": textvqa_accuracy_reward,
    "gsm8k": gsm8k_accuracy_reward,
    "math": math_accuracy_reward,
    "code": code_accuracy_reward,
    "thinking_format": thinking_format_reward,
}


def get_reward_function(name: str) -> RewardFunction:
    """A reward function by short name (`vqa`, `textvqa`, `gsm8k`, `math`, `code`, `thinking_format`)."""
    if name not in REWARD_FUNCTIONS:
        raise KeyError(f"Unknown reward {name!r}. Known rewards: {', '.join(REWARD_FUNCTIONS)}.")
    return REWARD_FUNCTIONS[name]


__all__ = [
    "REWARD_FUNCTIONS",
    "code_accuracy_reward",
    "completion_to_text",
    "get_reward_function",
    "gsm8k_accuracy_reward",
    "make_reward_function",
    "math_accuracy_reward",
    "textvqa_accuracy_reward",
    "thinking_format_reward",
    "vqa_accuracy_reward",
]
