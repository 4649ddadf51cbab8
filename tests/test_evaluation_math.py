"""GSM8K final-number extraction and MATH answer equivalence, on the real test sets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from openmind_hf.evaluation.math_answers import (
    extract_gsm8k_answer,
    extract_last_boxed,
    gsm8k_correct,
    math_correct,
)

SHARED_DATA = Path(os.environ.get("OPENMIND_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
GSM8K = SHARED_DATA / "gsm8k" / "test.jsonl"
MATH500 = SHARED_DATA / "math500" / "test.jsonl"


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        pytest.skip(f"real data file {path} not found (set OPENMIND_SHARED_DATA to the shared data dir)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_every_gsm8k_gold_solution_extracts_to_its_answer():
    rows = _rows(GSM8K)
    assert len(rows) == 1319
    matched = {"####": 0, "boxed": 0, "last number": 0}
    for row in rows:
        final = row["answer"].rsplit("####", 1)[1].strip()
        gold = str(int(final.replace(",", "")))  # computed independently of the extractor
        body = row["answer"].rsplit("####", 1)[0]
        matched["####"] += extract_gsm8k_answer(row["answer"]) == gold
        matched["boxed"] += extract_gsm8k_answer(f"{body}\nThe answer is $\\boxed{{{final}}}$.") == gold
        matched["last number"] += extract_gsm8k_answer(f"{body}\nSo the answer is {final}.") == gold
    print(f"GSM8K gold extraction: {matched} of {len(rows)}")
    assert matched == {"####": 1319, "boxed": 1319, "last number": 1319}


def test_gsm8k_set_has_the_separator_and_negative_cases_we_handle():
    rows = _rows(GSM8K)
    finals = [r["answer"].rsplit("####", 1)[1].strip() for r in rows]
    assert sum("," in f for f in finals) == 14
    assert sum(f.startswith("-") for f in finals) == 2


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("#### 1,234", "1234"),
        ("She made $1,000.50 in total.", "1000.5"),
        ("The result is -7.", "-7"),
        ("The result is \u22127.", "-7"),  # Unicode minus
        ("16-3-4=9 eggs", "9"),  # subtraction is not a sign
        ("#### 18\nIn other words 20", "18"),  # #### wins over the last number
        ("I think \\boxed{\\$18.00} is it, not 5", "18"),  # \boxed{} wins over the last number
        ("Answer: \\boxed{1{,}000}", "1000"),  # LaTeX thousands separator
        ("roughly .5 of them", "0.5"),
        ("no number here", None),
    ],
)
def test_gsm8k_extraction_formats(text, number):
    assert extract_gsm8k_answer(text) == number


def test_gsm8k_correct_compares_numbers():
    assert gsm8k_correct("so #### 18.00", "... #### 18") == 1.0
    assert gsm8k_correct("so #### 17", "... #### 18") == 0.0
    assert gsm8k_correct("nothing", "#### 18") == 0.0
    assert gsm8k_correct("#### 1,000", 1000) == 1.0
    with pytest.raises(ValueError, match="holds no number"):
        gsm8k_correct("18", "no gold here")


def test_every_math500_last_boxed_is_equivalent_to_its_answer():
    rows = _rows(MATH500)
    assert len(rows) == 500
    boxed = [extract_last_boxed(r["solution"]) for r in rows]
    assert all(b is not None for b in boxed)
    verdicts = [math_correct(r["solution"], r["answer"]) for r in rows]
    print(f"MATH-500 last-boxed equivalence: {int(sum(verdicts))}/500")
    assert sum(verdicts) == 500


def test_math_equivalence_is_not_trivially_true():
    rows = _rows(MATH500)
    # Each solution judged against ANOTHER problem's answer: equal answers aside, these must fail.
    wrong = [
        math_correct(rows[i]["solution"], rows[(i + 7) % len(rows)]["answer"])
        for i in range(0, 500, 5)
        if rows[i]["answer"].strip() != rows[(i + 7) % len(rows)]["answer"].strip()
    ]
    assert sum(wrong) <= 2  # a couple of different-looking answers may still be mathematically equal


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("So the answer is $\\boxed{\\frac{1}{2}}$.", "0.5", 1.0),
        ("\\boxed{\\frac12}", "\\frac{1}{2}", 1.0),
        ("First \\boxed{3}, wait, actually \\boxed{4}", "4", 1.0),  # the LAST box counts
        ("First \\boxed{3}, wait, actually \\boxed{4}", "3", 0.0),
        ("The answer is 1/2", "\\frac12", 1.0),  # no box: math-verify's own search
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)", 1.0),
        ("\\boxed{x^2+2x+1}", "(x+1)^2", 1.0),
        ("\\boxed{7}", "8", 0.0),
        ("", "8", 0.0),
    ],
)
def test_math_correct_cases(prediction, reference, expected):
    assert math_correct(prediction, reference) == expected


@pytest.mark.parametrize(
    ("text", "boxed"),
    [
        ("\\boxed{\\frac{a}{b}}", "\\frac{a}{b}"),
        ("\\boxed{1} then \\fbox{2}", "2"),
        ("\\boxed 5 apples", "5"),
        ("cut off \\boxed{\\frac{1", None),
        ("no box", None),
    ],
)
def test_extract_last_boxed(text, boxed):
    assert extract_last_boxed(text) == boxed
