"""MATH (Hendrycks et al. 2021, `MATH/{train,test}/{subject}/{n}.json`) -> instruction JSONL with reasoning.

Each upstream file is one problem: `{"problem", "level", "type", "solution"}`, the final answer inside the
solution's last `\\boxed{...}`. The full solution becomes `reasoning_content` and the boxed expression the answer,
so the thinking mode learns the worked steps and evaluation compares the answer alone (`metadata.answer`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import DataError
from .common import Remote, count_invalid, write_jsonl

REMOTES = (Remote("MATH.tar", url="https://people.eecs.berkeley.edu/~hendrycks/MATH.tar"),)
_BOX = re.compile(r"\\(?:boxed|fbox)\b")


def last_boxed(text: str) -> str | None:
    """Contents of the last `\\boxed{...}` / `\\fbox{...}` (braces balanced) or `\\boxed 5`, else None.

    The one copy of this rule: `evaluation.math_answers.extract_last_boxed` is this function (`data/` may not import
    `evaluation/`, so it lives here).
    """
    starts = list(_BOX.finditer(text))
    if not starts:
        return None
    position = starts[-1].end()
    rest = text[position:]
    if not rest.lstrip().startswith("{"):
        match = re.match(r"\s+([^\s$]+)", rest)
        return match.group(1) if match else None
    position += rest.index("{")
    depth = 0
    for index in range(position, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[position + 1 : index]
    return None


def _problem_files(input_dir: Path, split: str) -> list[Path]:
    # MATH/{split}/{subject}/{n}.json; sorted by subject then problem number so ids and order are stable.
    files = [p for p in Path(input_dir).rglob("*.json") if p.parent.parent.name == split]
    return sorted(files, key=lambda p: (p.parent.name, int(p.stem) if p.stem.isdigit() else 0, p.stem))


def _records(files: list[Path], split: str, counts: dict):
    for path in files:
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
            problem, solution = row["problem"].strip(), row["solution"].strip()
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as err:
            count_invalid(counts, f"{path}: not a MATH problem ({type(err).__name__}: {err})")
            continue
        answer = last_boxed(solution)
        if not answer or not answer.strip():
            count_invalid(counts, f"{path}: the solution has no \\boxed{{...}} answer")
            continue
        subject = path.parent.name
        yield {
            "id": f"math-{split}-{subject}-{path.stem}",
            "conversations": [
                {"from": "user", "value": problem},
                {"from": "assistant", "value": answer.strip(), "reasoning_content": solution},
            ],
            "metadata": {
                "source": "math",
                "task": "math",
                "answer": answer.strip(),
                "level": row.get("level"),
                "type": row.get("type"),
                "split": split,
            },
        }


def convert(input_dir: Path, output_dir: Path, limit: int | None = None, media_dir: Path | None = None) -> dict:
    """`MATH/train` (and `MATH/test` when present) -> `instruct_{split}.jsonl`."""
    counts: dict = {"invalid": 0, "invalid_examples": []}
    for split in ("train", "test"):
        files = _problem_files(input_dir, split)
        if files:
            path = output_dir / f"instruct_{split}.jsonl"
            counts[f"instruct_{split}"] = write_jsonl(path, _records(files, split, counts), limit)
    if not any(key.startswith("instruct_") for key in counts):
        raise DataError(
            f"no MATH/train/<subject>/<n>.json files under {input_dir}",
            source=str(input_dir),
            hint="unpack MATH.tar there (it holds MATH/train and MATH/test)",
        )
    return counts


__all__ = ["REMOTES", "convert", "last_boxed"]
