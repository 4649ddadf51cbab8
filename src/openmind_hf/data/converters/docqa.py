"""DocVQA and ChartQA -> instruction JSONL, from the official JSON files or from the Hub's Parquet exports.

- DocVQA official: `{train,val}_v1.0*.json` = `{"dataset_name": "docvqa", "data": [{"questionId", "question",
  "image": "documents/x.png", "answers": [...], "docId", ...}]}`, images next to the JSON.
  Hub (`lmms-lab/DocVQA`, Parquet): columns `questionId`, `question`, `answers`, `image` (`{"bytes", "path"}`).
- ChartQA official: `{split}/{split}_human.json` and `{split}_augmented.json` = `[{"imgname", "query", "label"}]`,
  images in `{split}/png/`. Hub (`HuggingFaceM4/ChartQA`, Parquet): `image`, `query`, `label` (list), `human_or_machine`.
"""

from __future__ import annotations

from pathlib import Path

from ..loading import list_data_files
from .common import VQA_PROMPT, Remote, find_file, load_json, media_path, save_image_bytes, write_jsonl

DOCVQA_REMOTES = (Remote("DocVQA/validation-*.parquet", repo_id="lmms-lab/DocVQA"),)
CHARTQA_REMOTES = (
    Remote("data/train-*.parquet", repo_id="HuggingFaceM4/ChartQA"),
    Remote("data/test-*.parquet", repo_id="HuggingFaceM4/ChartQA"),
)


def _record(sample_id: str, question: str, answers: list[str], image: str, metadata: dict) -> dict:
    return {
        "id": sample_id,
        "conversations": [
            {"from": "user", "value": f"<image>\n{question.strip()}\n{VQA_PROMPT}"},
            {"from": "assistant", "value": answers[0]},
        ],
        "image": image,
        "metadata": {**metadata, "answers": answers},
    }


def _parquet_rows(input_dir: Path, pattern: str):
    import pyarrow.parquet as pq

    for path in sorted(p for p in list_data_files(input_dir) if p.suffix == ".parquet" and p.match(pattern)):
        split = path.name.split("-")[0]
        for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
            for row in batch.to_pylist():
                yield split, row


def convert_docvqa(input_dir: Path, output_dir: Path, limit: int | None = None, media_dir: Path | None = None) -> dict:
    counts = {}
    for split, pattern in (("train", "train_v1.0*.json"), ("val", "val_v1.0*.json")):
        try:
            path = find_file(input_dir, pattern, what="DocVQA annotations")
        except Exception:
            continue
        root = media_dir or path.parent
        records = (
            _record(
                f"docvqa-{item['questionId']}",
                item["question"],
                item["answers"],
                media_path(root, item["image"], output_dir),
                {"source": "docvqa", "task": "docvqa", "question_id": item["questionId"], "split": split},
            )
            for item in load_json(path)["data"]
            if item.get("answers")  # the official test split has no answers
        )
        counts[f"instruct_{split}"] = write_jsonl(output_dir / f"instruct_{split}.jsonl", records, limit)
    if not counts:
        records = (
            _record(
                f"docvqa-{row['questionId']}",
                row["question"],
                list(row["answers"]),
                save_image_bytes(row["image"], output_dir, f"docvqa-{row['questionId']}"),
                {"source": "docvqa", "task": "docvqa", "question_id": row["questionId"], "split": split},
            )
            for split, row in _parquet_rows(input_dir, "*.parquet")
            if row.get("answers")
        )
        counts["instruct_val"] = write_jsonl(output_dir / "instruct_val.jsonl", records, limit)
        if not counts["instruct_val"]:
            find_file(input_dir, "val_v1.0*.json", what="DocVQA JSON or Parquet files with answers")
    return counts


def convert_chartqa(
    input_dir: Path, output_dir: Path, limit: int | None = None, media_dir: Path | None = None
) -> dict:
    counts = {}
    for split in ("train", "val", "test"):
        files = sorted(Path(input_dir).rglob(f"{split}_human.json")) + sorted(
            Path(input_dir).rglob(f"{split}_augmented.json")
        )
        if not files:
            continue

        def records(files=files, split=split):
            for path in files:
                root = media_dir or path.parent / "png"
                kind = "human" if path.stem.endswith("human") else "augmented"
                for index, item in enumerate(load_json(path)):
                    label = item["label"] if isinstance(item["label"], list) else [str(item["label"])]
                    yield _record(
                        f"chartqa-{split}-{kind}-{index}",
                        item["query"],
                        label,
                        media_path(root, item["imgname"], output_dir),
                        {"source": "chartqa", "task": "chartqa", "subset": kind, "split": split},
                    )

        counts[f"instruct_{split}"] = write_jsonl(output_dir / f"instruct_{split}.jsonl", records(), limit)
    if not counts:
        by_split: dict[str, list] = {}
        for split, row in _parquet_rows(input_dir, "*.parquet"):
            by_split.setdefault(split, []).append(row)
        for split, rows in by_split.items():
            records = (
                _record(
                    f"chartqa-{split}-{index}",
                    row["query"],
                    [str(x) for x in (row["label"] if isinstance(row["label"], list) else [row["label"]])],
                    save_image_bytes(row["image"], output_dir, f"chartqa-{split}-{index}"),
                    {
                        "source": "chartqa",
                        "task": "chartqa",
                        "subset": "human" if not row.get("human_or_machine") else "augmented",
                        "split": split,
                    },
                )
                for index, row in enumerate(rows)
            )
            counts[f"instruct_{split}"] = write_jsonl(output_dir / f"instruct_{split}.jsonl", records, limit)
        if not counts:
            find_file(input_dir, "*_human.json", what="ChartQA JSON or Parquet files")
    return counts
