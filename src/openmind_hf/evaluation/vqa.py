"""VQA and TextVQA accuracy, following the official evaluators to the letter.

No maintained package ships these scorers (each project copies them), so they are written here from the official
code: VQAv2's `vqaEval.py` (GT-Vision-Lab/VQA) and TextVQA's `TextVQAAccuracyEvaluator` with the EvalAI answer
processor (facebookresearch/mmf, `m4c_evaluators.py` / `processors.py`). Both score a prediction as
`min(#humans that gave it / 3, 1)`, averaged over the 10 leave-one-out subsets of 9 reference answers.

Quirks of the official code are kept on purpose, because they change scores:
- the period regex `(?!<=\\d)(\\.)(?!\\d)` is a mistyped look-behind: it drops every "." not followed by a digit;
- `re.UNICODE` is passed where `sub` expects `count`, so at most 32 periods are removed;
- when any answer contains "word, " or " word" punctuation or a digit-comma-digit, punctuation is deleted
  everywhere; otherwise it becomes a space;
- VQAv2 normalises the prediction fully, but the references only for punctuation, and only when the humans did not
  all agree (the official annotations are already normalised). TextVQA normalises both sides fully.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}  # fmt: skip
_NUMBERS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})
_PUNCTUATION = [
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
]
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # sic: the official (mistyped) pattern, see module docstring
_PERIOD_STRIP_COUNT = int(re.UNICODE)  # sic: the official code passes re.UNICODE (32) as `count`
_COMMA_STRIP_VQA = re.compile(r"(\d)(,)(\d)")
_COMMA_STRIP_EVALAI = re.compile(r"(?<=\d)(,)+(?=\d)")


def _process_punctuation(text: str, comma_strip: re.Pattern) -> str:
    out = text
    delete = comma_strip.search(text) is not None
    for p in _PUNCTUATION:
        # The test looks at the ORIGINAL text for every mark, as the official loop does.
        if delete or (p + " " in text or " " + p in text):
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def _process_digit_article(text: str) -> str:
    words = [_NUMBERS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in _ARTICLES]
    return " ".join(_CONTRACTIONS.get(word, word) for word in words)


def normalize_vqa_answer(answer: str) -> str:
    """VQAv2's normalisation of a predicted answer: whitespace, punctuation, then numbers, articles, contractions."""
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(answer, _COMMA_STRIP_VQA))


def normalize_textvqa_answer(answer: str) -> str:
    """TextVQA's (EvalAI's) normalisation: lower-case, drop "," and "?", split "'s", then as VQAv2."""
    answer = answer.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(answer, _COMMA_STRIP_EVALAI))


def _leave_one_out_accuracy(prediction: str, references: Sequence[str]) -> float:
    if len(references) == 1:
        # The official sets always have 10 answers; with one, leave-one-out would score every answer 0.
        return float(prediction == references[0])
    accuracies = []
    for left_out in range(len(references)):
        matches = sum(1 for i, ref in enumerate(references) if i != left_out and ref == prediction)
        accuracies.append(min(1.0, matches / 3))
    return sum(accuracies) / len(accuracies)


def _check_references(references: Sequence[str]) -> None:
    if isinstance(references, str) or not references:
        raise ValueError(
            f"VQA references must be a non-empty list of answers (10 in the official sets), got {references!r}."
        )


def vqa_accuracy(prediction: str, references: Sequence[str]) -> float:
    """VQAv2 accuracy of one predicted answer against the human answers (official `vqaEval.py` algorithm)."""
    _check_references(references)
    prediction = normalize_vqa_answer(prediction)
    references = list(references)
    if len(set(references)) > 1:
        references = [_process_punctuation(ref, _COMMA_STRIP_VQA) for ref in references]
    return _leave_one_out_accuracy(prediction, references)


def textvqa_accuracy(prediction: str, references: Sequence[str]) -> float:
    """TextVQA accuracy of one predicted answer (official `TextVQAAccuracyEvaluator` algorithm)."""
    _check_references(references)
    return _leave_one_out_accuracy(
        normalize_textvqa_answer(prediction), [normalize_textvqa_answer(ref) for ref in references]
    )


__all__ = ["normalize_textvqa_answer", "normalize_vqa_answer", "textvqa_accuracy", "vqa_accuracy"]
