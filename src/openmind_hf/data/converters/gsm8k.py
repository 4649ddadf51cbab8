"""GSM8K (`train.jsonl` / `test.jsonl` from openai/grade-school-math, or the Hub's Parquet) -> instruction JSONL.

Upstream rows are `{"question", "answer"}` where the answer is a worked solution with calculator annotations
(`<<48/2=24>>`) ending in `#### 72`. The solution (annotations removed) becomes `reasoning_content`, the number
after `####` the answer, so the thinking mode is trained on the worked steps.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import DataError
from .common import Remote, write_jsonl

REMOTES = tuple(Remote(f"main/{split}-00000-of-00001.parquet", repo_id="openai/gsm8k") for split in ("train", "test"))
_CALCULATOR = re.compile(r"<<[^>]*>>")


def split_solution(answer: str) -> tuple[str, str]:
    """`"... <<48/2=24>>24 ...\\n#### 72"` -> (`"... 24 ..."`, `"72"`)."""
    if "####" not in answer:
        raise DataError("GSM8K answer has no '#### <number>' line", hint="is this GSM8K's 'main' config?")
    steps, final = answer.rsplit("####", 1)
    return _CALCULATOR.sub("", steps).strip(), final.strip().replace(",", "")


def _rows(path: Path):
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
    else:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def convert(input_dir: Path, output_dir: Path, limit: int | None = None, media_dir: Path | None = None) -> dict:
    counts = {}
    for split in ("train", "test"):
        files = sorted(Path(input_dir).rglob(f"{split}.jsonl")) + sorted(Path(input_dir).rglob(f"{split}-*.parquet"))
        if not files:
            continue

        def records(path=files[0], split=split):
            for index, row in enumerate(_rows(path)):
                reasoning, answer = split_solution(row["answer"])
                yield {
                    "id": f"gsm8k-{split}-{index}",
                    "conversations": [
                        {"from": "user", "value": row["question"].strip()},
                        {"from": "assistant", "value": answer, "reasoning_content": reasoning},
                    ],
                    "metadata": {"source": "gsm8k", "task": "math", "answer": answer, "split": split},
                }

        counts[f"instruct_{split}"] = write_jsonl(output_dir / f"instruct_{split}.jsonl", records(), limit)
    if not counts:
        raise DataError(
            f"no GSM8K train.jsonl/test.jsonl or main/*-00000-of-00001.parquet under {input_dir}",
            source=str(input_dir),
            hint="point --input at the folder holding them",
        )
    return counts
