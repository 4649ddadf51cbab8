"""Caption metrics agree with calling sacrebleu, rouge-score and pycocoevalcap directly."""

from __future__ import annotations

import pytest
import sacrebleu
from pycocoevalcap.cider.cider import Cider
from rouge_score import rouge_scorer

from openmind_hf.evaluation.caption_metrics import (
    bleu,
    cider_d,
    java_available,
    rouge_l,
    simple_ptb_tokenize,
    tokenize_captions,
)

PREDICTIONS = [
    "A man is riding a horse on the beach.",
    "Two dogs playing with a red ball in the grass!",
    "a plate of food, with broccoli; and rice.",
    "A red double-decker bus drives down the street.",
]
REFERENCES = [
    ["A man rides a horse along the beach.", "A person riding a brown horse on sand.", "man on horse at the seaside"],
    ["Two dogs play with a ball on the grass.", "A pair of dogs chasing a red ball."],
    ["A plate with broccoli and rice.", "Food on a white plate.", "A dish of rice, broccoli and chicken."],
    ["A double decker bus on a city street.", "A red bus driving through town.", "The bus is red."],
]

needs_java = pytest.mark.skipif(not java_available(), reason="the PTB tokenizer needs `java` on the PATH")


def test_bleu_equals_sacrebleu():
    width = max(len(r) for r in REFERENCES)
    streams = [[refs[i] if i < len(refs) else None for refs in REFERENCES] for i in range(width)]
    assert bleu(PREDICTIONS, REFERENCES) == sacrebleu.corpus_bleu(PREDICTIONS, streams).score
    same_width = [refs[:2] for refs in REFERENCES]
    direct = sacrebleu.corpus_bleu(PREDICTIONS, [[r[0] for r in same_width], [r[1] for r in same_width]]).score
    assert bleu(PREDICTIONS, same_width) == direct
    assert 0.0 < direct < 100.0


def test_rouge_l_equals_rouge_score():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    direct = [scorer.score_multi(refs, pred)["rougeL"].fmeasure for pred, refs in zip(PREDICTIONS, REFERENCES)]
    assert rouge_l(PREDICTIONS, REFERENCES) == pytest.approx(sum(direct) / len(direct), abs=1e-12)


@needs_java
def test_cider_d_equals_pycocoevalcap_with_ptb_tokenizer():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = PTBTokenizer().tokenize({i: [{"caption": c} for c in refs] for i, refs in enumerate(REFERENCES)})
    res = PTBTokenizer().tokenize({i: [{"caption": p}] for i, p in enumerate(PREDICTIONS)})
    direct, _ = Cider().compute_score(gts, res)
    score, used = cider_d(PREDICTIONS, REFERENCES, tokenizer="ptb")
    assert used == "ptb"
    assert score == pytest.approx(direct, abs=1e-12)
    assert cider_d(PREDICTIONS, REFERENCES)[1] == "ptb"  # "auto" picks PTB when Java exists


def test_cider_d_with_fallback_tokenizer_equals_pycocoevalcap_on_the_same_tokens():
    gts = {i: [simple_ptb_tokenize(c) for c in refs] for i, refs in enumerate(REFERENCES)}
    res = {i: [simple_ptb_tokenize(p)] for i, p in enumerate(PREDICTIONS)}
    direct, _ = Cider().compute_score(gts, res)
    score, used = cider_d(PREDICTIONS, REFERENCES, tokenizer="simple")
    assert used == "simple"
    assert score == pytest.approx(direct, abs=1e-12)


@needs_java
def test_fallback_tokenizer_matches_ptb_on_ordinary_captions():
    captions = {i: refs + [PREDICTIONS[i]] for i, refs in enumerate(REFERENCES)}
    ptb, _ = tokenize_captions(captions, "ptb")
    simple, _ = tokenize_captions(captions, "simple")
    assert simple == ptb


def test_cider_needs_two_images_and_rewards_better_captions():
    with pytest.raises(ValueError, match="at least 2 images"):
        cider_d(PREDICTIONS[:1], REFERENCES[:1], tokenizer="simple")
    good, _ = cider_d([refs[0] for refs in REFERENCES], REFERENCES, tokenizer="simple")
    bad, _ = cider_d(["a cat sleeping on a sofa"] * len(REFERENCES), REFERENCES, tokenizer="simple")
    assert good > bad >= 0.0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="2 predictions but 1"):
        bleu(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="sample 0"):
        rouge_l(["a"], ["a"])
    with pytest.raises(ValueError, match="Unknown caption tokenizer"):
        tokenize_captions({0: ["a"]}, "spacy")
