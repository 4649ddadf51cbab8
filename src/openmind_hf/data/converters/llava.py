"""LLaVA-Pretrain (`blip_laion_cc_sbu_558k.json`) and LLaVA-Instruct (`llava_v1_5_mix665k.json`) -> our JSONL.

Both upstream files are one JSON array of `{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}]}`
(text-only instruction records have no `image`). Image paths are relative to the image folder (`--media-dir`).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..formats import normalize_record
from .common import Remote, find_file, load_json, media_path, write_jsonl

PRETRAIN_REMOTES = (Remote("blip_laion_cc_sbu_558k.json", repo_id="liuhaotian/LLaVA-Pretrain"),)
INSTRUCT_REMOTES = (Remote("llava_v1_5_mix665k.json", repo_id="liuhaotian/LLaVA-Instruct-150K"),)


def convert_pretrain(
    input_dir: Path, output_dir: Path, limit: int | None = None, media_dir: Path | None = None
) -> dict:
    """Caption-only pretraining records: the human prompt is dropped (stage 1 learns captions only)."""
    path = find_file(input_dir, "blip_laion_cc_sbu_558k.json", "*pretrain*.json", what="LLaVA-Pretrain JSON")
    root = media_dir or path.parent
    records = (
        {
            "id": str(item["id"]),
            "text": next(t["value"] for t in item["conversations"] if t["from"] == "gpt").strip(),
            "image": media_path(root, item["image"], output_dir),
            "metadata": {"source": "llava_pretrain"},
        }
        for item in load_json(path)
    )
    return {"pretrain_train": write_jsonl(output_dir / "pretrain_train.jsonl", records, limit)}


def convert_instruct(
    input_dir: Path, output_dir: Path, limit: int | None = None, media_dir: Path | None = None
) -> dict:
    """Instruction records kept as conversations; records our loader would reject are counted and left out."""
    path = find_file(input_dir, "llava_v1_5_mix665k.json", "llava_instruct*.json", what="LLaVA-Instruct JSON")
    root = media_dir or path.parent
    invalid = []

    def records():
        for index, item in enumerate(load_json(path), start=1):
            record = {"id": str(item["id"]), "conversations": item["conversations"]}
            if item.get("image"):
                record["image"] = media_path(root, item["image"], output_dir)
            record["metadata"] = {
                "source": "llava_instruct",
                **({"model": item["model"]} if item.get("model") else {}),
            }
            try:
                normalize_record(record, source=str(path), line=index)
            except DataError as err:
                invalid.append(str(err))
                continue
            yield record

    written = write_jsonl(output_dir / "instruct_train.jsonl", records(), limit)
    return {"instruct_train": written, "invalid": len(invalid), "invalid_examples": invalid[:5]}
