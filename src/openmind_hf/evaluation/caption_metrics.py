"""Caption and free-text metrics on the maintained scorers: BLEU (`sacrebleu`), ROUGE-L (`rouge-score`) and
COCO CIDEr-D (`pycocoevalcap`).

CIDEr-D follows the COCO caption evaluation: captions are tokenised with the Stanford PTB tokenizer shipped in
`pycocoevalcap` (it needs `java`), lower-cased and stripped of punctuation. Without Java a pure-Python fallback
(`simple_ptb_tokenize`) is used: it lower-cases, splits off the same punctuation and drops it, which matches the
PTB tokenizer on ordinary captions but not on every corner (e.g. "cannot", quotes). The report says which one ran.
SPICE is left out: it downloads Stanford CoreNLP models at run time. CIDEr's IDF comes from the evaluated set,
so it needs at least 2 images.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence

# Punctuation the COCO evaluation removes after PTB tokenisation (pycocoevalcap/tokenizer/ptbtokenizer.py).
_PTB_PUNCTUATION = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"])  # fmt: skip
_SIMPLE_TOKEN = re.compile(r"n't\b|'(?:s|re|ve|ll|d|m)\b|\w+(?:[-.]\w+)*|\.\.\.|--|[^\w\s]")


def _check(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists.")
    for index, refs in enumerate(references):
        if isinstance(refs, str) or not refs:
            raise ValueError(f"sample {index}: references must be a non-empty list of strings, got {refs!r}.")


def bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 from `sacrebleu` (its default 13a tokenisation), on a 0-100 scale.

    Samples may have different numbers of references.
    """
    import sacrebleu

    _check(predictions, references)
    width = max(len(refs) for refs in references)
    # sacrebleu wants one stream per reference position; a missing reference is None.
    streams = [[refs[i] if i < len(refs) else None for refs in references] for i in range(width)]
    return float(sacrebleu.corpus_bleu(list(predictions), streams).score)


def rouge_l(predictions: Sequence[str], references: Sequence[Sequence[str]], use_stemmer: bool = True) -> float:
    """Mean ROUGE-L F-measure from `rouge-score`; with several references a sample takes its best one."""
    from rouge_score import rouge_scorer

    _check(predictions, references)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    scores = [scorer.score_multi(list(refs), pred)["rougeL"].fmeasure for pred, refs in zip(predictions, references)]
    return float(sum(scores) / len(scores)) if scores else 0.0


def java_available() -> bool:
    """Whether the PTB tokenizer (a Java program) can run here."""
    return shutil.which("java") is not None


def simple_ptb_tokenize(text: str) -> str:
    """Fallback for the PTB tokenizer when Java is missing: lower-case, split punctuation off, drop it."""
    tokens = _SIMPLE_TOKEN.findall(text.lower().replace("\n", " "))
    return " ".join(token for token in tokens if token not in _PTB_PUNCTUATION)


def tokenize_captions(captions: dict[int, list[str]], tokenizer: str = "auto") -> tuple[dict[int, list[str]], str]:
    """Tokenise `{image_id: [caption, ...]}` the COCO way. Returns the tokenised dict and the tokenizer used.

    Args:
        tokenizer (`str`, *optional*, defaults to `"auto"`): `"ptb"` (Stanford PTB via Java), `"simple"` (the
            pure-Python fallback) or `"auto"` (PTB when `java` is on the PATH).
    """
    if tokenizer == "auto":
        tokenizer = "ptb" if java_available() else "simple"
    if tokenizer == "ptb":
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        # The PTB tokenizer reads {id: [{"caption": str}]} and writes a temp file beside its jar.
        wrapped = {key: [{"caption": c} for c in value] for key, value in captions.items()}
        return PTBTokenizer().tokenize(wrapped), "ptb"
    if tokenizer == "simple":
        return {key: [simple_ptb_tokenize(c) for c in value] for key, value in captions.items()}, "simple"
    raise ValueError(f"Unknown caption tokenizer {tokenizer!r}; use 'auto', 'ptb' or 'simple'.")


def cider_d(
    predictions: Sequence[str], references: Sequence[Sequence[str]], tokenizer: str = "auto"
) -> tuple[float, str]:
    """COCO CIDEr-D (pycocoevalcap's `Cider`: n=4, sigma=6, clipped counts, x10) after COCO tokenisation.

    Returns:
        `(score, tokenizer_used)`. The score is on pycocoevalcap's scale (x10, so ~0-10 rather than 0-1).
    """
    from pycocoevalcap.cider.cider import Cider

    _check(predictions, references)
    if len(predictions) < 2:
        raise ValueError("CIDEr needs at least 2 images: its IDF weights come from the evaluated set.")
    # Predictions and references are tokenised in one call, as the COCO evaluation does (one Java start).
    merged = {i: list(refs) for i, refs in enumerate(references)}
    offset = len(references)
    merged.update({offset + i: [pred] for i, pred in enumerate(predictions)})
    tokenized, used = tokenize_captions(merged, tokenizer)
    gts = {i: tokenized[i] for i in range(offset)}
    res = {i: tokenized[offset + i] for i in range(offset)}
    score, _ = Cider().compute_score(gts, res)
    return float(score), used


__all__ = ["bleu", "cider_d", "java_available", "rouge_l", "simple_ptb_tokenize", "tokenize_captions"]
