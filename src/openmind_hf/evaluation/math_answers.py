"""Final answers of maths problems: GSM8K number extraction (by hand) and MATH equivalence (`math-verify`).

GSM8K golds are numbers after `####`; models answer with `####`, `\\boxed{}` or a sentence ending in the number,
with thousands separators, dollar signs and minus signs. No maintained package does this extraction on its own,
so it is written here and tested against every gold solution of the test set.

MATH answers are LaTeX expressions whose equality needs a computer-algebra check: that is `math-verify`
(Hugging Face's, the one TRL and open-r1 use). We only pick what to compare: the last `\\boxed{}` when there is one.
"""

from __future__ import annotations

import re
import threading
from decimal import Decimal, InvalidOperation

# One rule for the last \boxed{} answer, shared with the MATH converter (data/ may not import evaluation/).
from ..data.converters.hendrycks_math import last_boxed as extract_last_boxed

# A number with optional sign, thousands separators and decimals. A "-" counts as a sign only when it does not
# follow a word character or ")" (so "16-3-4=9" yields 16, 3, 4, 9, not -3, -4).
_NUMBER = re.compile(r"(?:(?<![\w)])-)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|(?:(?<![\w)])-)?\.\d+")
_HASHES = re.compile(r"####\s*([^\n]*)")
_MINUS_SIGNS = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-"})


def _canonical_number(text: str) -> str | None:
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None
    if value == value.to_integral_value():
        return str(value.quantize(Decimal(1)))  # "18.00" -> "18", "-0" stays "-0" only if written so
    return format(value.normalize(), "f")


def _numbers(text: str) -> list[str]:
    return _NUMBER.findall(text.translate(_MINUS_SIGNS).replace("\\!", "").replace("{,}", ","))


def extract_gsm8k_answer(text: str) -> str | None:
    """The final number of a GSM8K-style answer, in canonical form ("1,000.00" -> "1000"), or None.

    Looks, in order, at the text after the last `####`, inside the last `\\boxed{}`, then at the last number.
    """
    hashes = _HASHES.findall(text)
    if hashes:
        numbers = _numbers(hashes[-1])
        if numbers:
            return _canonical_number(numbers[0])
    boxed = extract_last_boxed(text)
    if boxed is not None:
        numbers = _numbers(boxed)
        if numbers:
            return _canonical_number(numbers[-1])
    numbers = _numbers(text)
    return _canonical_number(numbers[-1]) if numbers else None


def gsm8k_correct(prediction: str, reference: str | int | float) -> float:
    """1.0 when the prediction's final number equals the reference's (a full gold solution or a bare number)."""
    gold = extract_gsm8k_answer(str(reference))
    if gold is None:
        raise ValueError(f"GSM8K reference {reference!r} holds no number; give the gold solution or its final number.")
    predicted = extract_gsm8k_answer(prediction)
    return float(predicted is not None and Decimal(predicted) == Decimal(gold))


def _timeouts() -> dict:
    # math-verify enforces its timeouts with SIGALRM, which only works in the main thread.
    on_main = threading.current_thread() is threading.main_thread()
    return {"parsing_timeout": 5 if on_main else None}


def _as_latex(answer: str) -> str:
    answer = answer.strip()
    return answer if answer.startswith("$") else f"${answer}$"


def parse_math_answer(text: str) -> list:
    """Parse the final answer of a solution with `math-verify`: the last `\\boxed{}` if any, else its own search."""
    from math_verify import parse

    boxed = extract_last_boxed(text)
    return parse(_as_latex(boxed) if boxed is not None else text, **_timeouts())


def math_correct(prediction: str, reference: str) -> float:
    """1.0 when `math-verify` judges the prediction's final answer equivalent to `reference`.

    Args:
        prediction (`str`): the model's answer (after its thinking block).
        reference (`str`): the gold answer in LaTeX (MATH's `answer` field), or a gold solution with `\\boxed{}`.
    """
    from math_verify import parse, verify

    boxed = extract_last_boxed(reference)
    gold = parse(_as_latex(boxed if boxed is not None else reference), **_timeouts())
    if not gold:
        raise ValueError(f"math-verify could not parse the reference answer {reference!r}.")
    predicted = parse_math_answer(prediction)
    on_main = threading.current_thread() is threading.main_thread()
    return float(bool(predicted) and verify(gold, predicted, timeout_seconds=5 if on_main else None))


__all__ = [
    "extract_gsm8k_answer",
    "extract_last_boxed",
    "gsm8k_correct",
    "math_correct",
    "parse_math_answer",
]
