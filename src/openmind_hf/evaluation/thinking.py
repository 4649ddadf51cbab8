"""Split a generation into its thinking block and its answer, the same way for evaluation and for rewards.

The chat format writes reasoning as `<think> ... </think>` before the answer. The answer is whatever follows the
LAST `</think>`. A `<think>` that is never closed (the model ran out of tokens while thinking) leaves no answer:
it is counted as unterminated and scores zero, rather than having its half-finished reasoning graded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\r?\n)+")
_WELL_FORMED = re.compile(r"\A\s*<think>(?P<reasoning>.*?)</think>(?P<answer>.*)\Z", re.DOTALL)


@dataclass(frozen=True)
class ThinkingSplit:
    """A generation cut at its thinking block.

    Args:
        reasoning (`str`): text inside the thinking block(s), empty if there were none.
        answer (`str`): text after the last `</think>` (the whole text when there is no thinking block), without
            leading blank lines or trailing whitespace; the first line keeps its indentation (code answers).
        terminated (`bool`): False when a `<think>` was opened and never closed.
    """

    reasoning: str
    answer: str
    terminated: bool


def _clean(answer: str) -> str:
    return _LEADING_BLANK_LINES.sub("", answer).rstrip()


def split_thinking(text: str) -> ThinkingSplit:
    """Split `text` into reasoning and answer; see the module docstring for the rules."""
    close = text.rfind(THINK_CLOSE)
    open_ = text.rfind(THINK_OPEN)
    if open_ > close:  # the last block was opened and never closed
        return ThinkingSplit(reasoning=text[open_ + len(THINK_OPEN) :].strip(), answer="", terminated=False)
    if close == -1:
        return ThinkingSplit(reasoning="", answer=_clean(text), terminated=True)
    reasoning = text[:close].replace(THINK_OPEN, "").strip()
    return ThinkingSplit(reasoning=reasoning, answer=_clean(text[close + len(THINK_CLOSE) :]), terminated=True)


def extract_answer(text: str) -> str:
    """The answer part of a generation: text after the last `</think>`; empty if thinking never ended."""
    return split_thinking(text).answer


def is_well_formed_thinking(text: str) -> bool:
    """Exactly one `<think>...</think>` block with non-empty reasoning, at the start, then a non-empty answer."""
    if text.count(THINK_OPEN) != 1 or text.count(THINK_CLOSE) != 1:
        return False
    match = _WELL_FORMED.match(text)
    return bool(match) and bool(match["reasoning"].strip()) and bool(match["answer"].strip())


__all__ = ["THINK_CLOSE", "THINK_OPEN", "ThinkingSplit", "extract_answer", "is_well_formed_thinking", "split_thinking"]
