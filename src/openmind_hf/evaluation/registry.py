"""One registry of metrics, used by the eval runner and turned into GRPO reward functions by `rewards.py`.

Each metric scores a list of predictions (answers, already cut after `</think>`) against references. Metrics that
are defined per sample (accuracies, pass@1, ROUGE-L) also expose `sample_score`, which is what a reward needs;
corpus-level ones (BLEU, CIDEr-D) exist only over a set.

    >>> from openmind_hf.evaluation import compute_metric
    >>> compute_metric("gsm8k_accuracy", ["... #### 18"], ["Janet sells 9 eggs ... #### 18"])
    1.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .caption_metrics import bleu, cider_d, rouge_l
from .humaneval import build_check_job, extract_completion
from .math_answers import gsm8k_correct, math_correct
from .sandbox import SandboxLimits, check_many
from .vqa import textvqa_accuracy, vqa_accuracy


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    Args:
        name (`str`): registry key.
        description (`str`): one line for `--help` and reports.
        corpus_score (`Callable[[Sequence[str], Sequence[Any]], float]`): score of a whole set.
        sample_score (`Callable[[str, Any], float]`, *optional*): score of one prediction in [0, 1]; `None` for
            corpus-only metrics.
        reference_columns (`tuple[str, ...]`): dataset columns a reward function reads the reference from.
    """

    name: str
    description: str
    corpus_score: Callable[[Sequence[str], Sequence[Any]], float]
    sample_score: Callable[[str, Any], float] | None = None
    reference_columns: tuple[str, ...] = ()


def _mean_of(sample_score: Callable[[str, Any], float]) -> Callable[[Sequence[str], Sequence[Any]], float]:
    def corpus(predictions: Sequence[str], references: Sequence[Any]) -> float:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references.")
        scores = [sample_score(p, r) for p, r in zip(predictions, references)]
        return sum(scores) / len(scores) if scores else 0.0

    return corpus


def code_pass_rates(
    predictions: Sequence[str],
    problems: Sequence[Mapping],
    limits: SandboxLimits | None = None,
    workers: int = 2,
) -> list[float]:
    """1.0/0.0 per answer: does the code it holds pass the problem's tests in the sandbox?

    Each problem needs `test` and `entry_point`, and may have `prompt` (HumanEval's function stub, which the
    answer continues or redefines; use the column name `code_prompt` in a GRPO dataset).
    """
    jobs = []
    for index, (prediction, problem) in enumerate(zip(predictions, problems)):
        missing = [key for key in ("test", "entry_point") if key not in problem]
        if missing:
            raise ValueError(f"code problem {index} lacks {missing}; it needs `test` and `entry_point`.")
        stub = {**problem, "prompt": problem.get("prompt") or problem.get("code_prompt") or ""}
        # The tests run in a trusted process and call the sandboxed answer through literal values (see sandbox.py).
        jobs.append(build_check_job(stub, extract_completion(prediction, stub)))
    results = check_many(jobs, limits, workers=workers)
    return [float(r.passed) for r in results]


def _pass_at_1(predictions: Sequence[str], problems: Sequence[Mapping]) -> float:
    rates = code_pass_rates(predictions, problems)
    return sum(rates) / len(rates) if rates else 0.0


def _rouge_l_sample(prediction: str, references: Sequence[str]) -> float:
    return rouge_l([prediction], [references])


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("vqa_accuracy", "VQAv2 accuracy (official normalisation, 10 leave-one-out subsets)",
               _mean_of(vqa_accuracy), vqa_accuracy, ("answers",)),
        Metric("textvqa_accuracy", "TextVQA accuracy (EvalAI normalisation, same soft score)",
               _mean_of(textvqa_accuracy), textvqa_accuracy, ("answers",)),
        Metric("gsm8k_accuracy", "GSM8K exact final number (####, \\boxed{} or last number)",
               _mean_of(gsm8k_correct), gsm8k_correct, ("answer",)),
        Metric("math_accuracy", "MATH answer equivalence (last \\boxed{}, math-verify)",
               _mean_of(math_correct), math_correct, ("answer",)),
        Metric("pass@1", "HumanEval-style functional correctness in the sandbox (greedy, one sample)",
               _pass_at_1, lambda p, r: code_pass_rates([p], [r])[0], ("test", "entry_point", "code_prompt")),
        Metric("bleu", "corpus BLEU-4 (sacrebleu, 0-100)", bleu, None, ("references",)),
        Metric("rouge_l", "ROUGE-L F-measure (rouge-score, stemmed, best reference)",
               rouge_l, _rouge_l_sample, ("references",)),
        Metric("cider_d", "COCO CIDEr-D (pycocoevalcap, PTB tokens; x10 scale)",
               lambda p, r: cider_d(p, r)[0], None, ("references",)),
    ]
}  # fmt: skip


def get_metric(name: str) -> Metric:
    """The metric registered under `name`; the error lists the known names."""
    if name not in METRICS:
        raise KeyError(f"Unknown metric {name!r}. Known metrics: {', '.join(sorted(METRICS))}.")
    return METRICS[name]


def list_metrics() -> list[str]:
    return sorted(METRICS)


def compute_metric(name: str, predictions: Sequence[str], references: Sequence[Any]) -> float:
    """Score `predictions` against `references` with the metric registered under `name`."""
    return get_metric(name).corpus_score(predictions, references)


__all__ = ["METRICS", "Metric", "code_pass_rates", "compute_metric", "get_metric", "list_metrics"]
