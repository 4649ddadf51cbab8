"""VQA / TextVQA accuracy against values worked out by hand from the official evaluators' code
(GT-Vision-Lab/VQA `vqaEval.py`; mmf `TextVQAAccuracyEvaluator` + `EvalAIAnswerProcessor`)."""

from __future__ import annotations

import pytest

from openmind_hf.evaluation.vqa import (
    normalize_textvqa_answer,
    normalize_vqa_answer,
    textvqa_accuracy,
    vqa_accuracy,
)


def refs(**counts: int) -> list[str]:
    """10 human answers, e.g. refs(yes=2, no=8)."""
    answers = [answer for answer, n in counts.items() for _ in range(n)]
    assert len(answers) == 10
    return answers


# Leave-one-out over 10 answers, k of them matching the prediction:
#   leaving out a match (k times) -> min(1, (k-1)/3); leaving out another (10-k times) -> min(1, k/3).
@pytest.mark.parametrize(
    ("k", "expected"),
    [
        (0, 0.0),
        (1, (1 * 0 + 9 * (1 / 3)) / 10),  # 0.3
        (2, (2 * (1 / 3) + 8 * (2 / 3)) / 10),  # 0.6
        (3, (3 * (2 / 3) + 7 * 1) / 10),  # 0.9
        (4, 1.0),
        (10, 1.0),
    ],
)
def test_soft_score_over_leave_one_out_subsets(k, expected):
    answers = ["yes"] * k + ["no"] * (10 - k)
    assert vqa_accuracy("yes", answers) == pytest.approx(expected)
    assert textvqa_accuracy("yes", answers) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The dog.", "dog"),  # period stripped, article dropped
        ("3.5", "3.5"),  # a period before a digit stays
        ("a.m.", "am"),  # the mistyped look-behind strips every other period
        ("1,000", "1000"),  # digit,digit present: every punctuation mark is deleted
        ("black, white", "black white"),  # ", " present: the comma is deleted
        ("black,white", "black white"),  # no space next to it: it becomes a space
        ("t-shirt", "t shirt"),
        ("hot-dog, yes", "hot dog yes"),  # each mark decided on its own ("-" -> space, "," -> deleted)
        ("dont", "don't"),  # contractions
        ("isnt", "isn't"),
        ("None", "0"),  # number words, after lower-casing
        ("Two", "2"),
        ("ten", "10"),
        ("an apple", "apple"),
        ("\tRed\n", "red"),
        ("yes!", "yes"),
        ("Bob's", "bob's"),  # VQAv2 keeps the apostrophe attached
    ],
)
def test_vqa_normalisation_corner_cases(raw, normalized):
    assert normalize_vqa_answer(raw) == normalized


def test_period_strip_stops_after_32_like_the_official_code():
    # `re.UNICODE` (32) is passed as `count` in the official code: the 33rd period survives.
    assert normalize_vqa_answer("." * 33) == "."
    assert normalize_vqa_answer("." * 32) == ""


def test_vqa_prediction_is_normalised_before_matching():
    assert vqa_accuracy("Two", refs(**{"2": 10})) == 1.0
    assert vqa_accuracy("The Dog.", refs(dog=3, cat=7)) == pytest.approx(0.9)
    assert vqa_accuracy("1,000", refs(**{"1000": 1, "100": 9})) == pytest.approx(0.3)


def test_vqa_references_get_punctuation_only_and_only_when_humans_disagree():
    # Official quirk: unanimous references are compared raw, so "Two" (unprocessed) never equals "2".
    assert vqa_accuracy("two", refs(Two=10)) == 0.0
    # Disagreeing references are punctuation-processed but not lower-cased or digit-mapped:
    # "t-shirt" -> "t shirt" matches; "Two" stays "Two" and does not match "2".
    assert vqa_accuracy("t shirt", refs(**{"t-shirt": 3, "shirt": 7})) == pytest.approx(0.9)
    assert vqa_accuracy("two", refs(Two=9, **{"2": 1})) == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Coca-Cola", "coca cola"),
        ("Bob's", "bob 's"),  # "'s" split off by EvalAI's word_tokenize
        ("What?", "what"),
        ("1,000", "1000"),  # commas dropped before punctuation handling
        ("The END.", "end"),
        ("three", "3"),
    ],
)
def test_textvqa_normalisation(raw, normalized):
    assert normalize_textvqa_answer(raw) == normalized


def test_textvqa_normalises_references_too():
    assert textvqa_accuracy("2", refs(Two=10)) == 1.0  # unlike VQAv2
    assert textvqa_accuracy("coca cola", refs(**{"Coca-Cola": 2, "pepsi": 8})) == pytest.approx(0.6)
    assert textvqa_accuracy("bob's", refs(**{"Bob's": 1, "bob": 9})) == pytest.approx(0.3)


def test_bad_references_are_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="non-empty list"):
        vqa_accuracy("yes", "yes")
    with pytest.raises(ValueError, match="non-empty list"):
        textvqa_accuracy("yes", [])


def test_single_reference_is_exact_match_after_normalisation():
    assert vqa_accuracy("The dog", ["dog"]) == 1.0
    assert vqa_accuracy("cat", ["dog"]) == 0.0
