"""Evaluation: metrics (one registry), TRL reward functions, the code sandbox, perplexity and the eval runner.

- `registry`: every metric by name (`compute_metric("vqa_accuracy", predictions, references)`).
- `rewards`: the same scorers as GRPO reward functions, plus `thinking_format_reward`.
- `vqa`, `math_answers`, `caption_metrics`, `humaneval`, `perplexity`: the scorers themselves.
- `sandbox`: runs model-written code with limits, no network and a throw-away working directory.
- `tasks`, `runner`, `commands`: `openmind eval` and the files it reads.
"""

from .caption_metrics import bleu, cider_d, rouge_l
from .humaneval import build_program, estimate_pass_at_k, evaluate_samples, extract_completion, load_problems
from .math_answers import extract_gsm8k_answer, extract_last_boxed, gsm8k_correct, math_correct
from .registry import METRICS, Metric, compute_metric, get_metric, list_metrics
from .rewards import (
    REWARD_FUNCTIONS,
    code_accuracy_reward,
    get_reward_function,
    gsm8k_accuracy_reward,
    make_reward_function,
    math_accuracy_reward,
    textvqa_accuracy_reward,
    thinking_format_reward,
    vqa_accuracy_reward,
)
from .sandbox import (
    ExecutionResult,
    SandboxLimits,
    SandboxUnavailableError,
    allow_unsandboxed_code,
    boundary_status,
    check_candidate,
    check_many,
    run_many,
    run_python,
)
from .tasks import TASKS
from .thinking import extract_answer, is_well_formed_thinking, split_thinking
from .vqa import normalize_textvqa_answer, normalize_vqa_answer, textvqa_accuracy, vqa_accuracy

# These import torch: loaded on first use, so `openmind eval --help` (which imports `.tasks`) stays instant.
_LAZY = {
    "perplexity": ".perplexity",
    **dict.fromkeys(("EvalConfig", "evaluate", "markdown_table", "run_evaluation"), ".runner"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name], __name__), name)


__all__ = [
    "METRICS",
    "REWARD_FUNCTIONS",
    "TASKS",
    "EvalConfig",
    "ExecutionResult",
    "Metric",
    "SandboxLimits",
    "SandboxUnavailableError",
    "allow_unsandboxed_code",
    "boundary_status",
    "check_candidate",
    "check_many",
    "bleu",
    "build_program",
    "cider_d",
    "code_accuracy_reward",
    "compute_metric",
    "estimate_pass_at_k",
    "evaluate",
    "evaluate_samples",
    "extract_answer",
    "extract_completion",
    "extract_gsm8k_answer",
    "extract_last_boxed",
    "get_metric",
    "get_reward_function",
    "gsm8k_accuracy_reward",
    "gsm8k_correct",
    "is_well_formed_thinking",
    "list_metrics",
    "load_problems",
    "make_reward_function",
    "markdown_table",
    "math_accuracy_reward",
    "math_correct",
    "normalize_textvqa_answer",
    "normalize_vqa_answer",
    "perplexity",
    "rouge_l",
    "run_evaluation",
    "run_many",
    "run_python",
    "split_thinking",
    "textvqa_accuracy",
    "textvqa_accuracy_reward",
    "thinking_format_reward",
    "vqa_accuracy",
    "vqa_accuracy_reward",
]
