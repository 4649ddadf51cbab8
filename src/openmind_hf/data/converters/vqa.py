"""VQAv2 and TextVQA (official JSON files) -> instruction JSONL with all reference answers in metadata.

- VQAv2: `v2_OpenEnded_mscoco_{train,val}2014_questions.json` (`{"data_subtype", "questions": [{"image_id",
  "question", "question_id"}]}`) + `v2_mscoco_{train,val}2014_annotations.json` (`{"annotations": [{"question_id",
  "multiple_choice_answer", "answers": [{"answer", ...}], "answer_type", ...}]}`); images
  `{data_subtype}/COCO_{data_subtype}_{image_id:012d}.jpg`.
- TextVQA: `TextVQA_0.5.1_{train,val}.json` (`{"data": [{"question", "image_id", "answers": [10 strings],
  "question_id", "set_name"}]}`); images `train_images/{image_id}.jpg` (val images are in train_images too).
"""

from __future__ import annotations

from pathlib import Path

from .common import VQA_PROMPT, Remote, find_file, load_json, media_path, most_common, write_jsonl

_VQA_BASE = "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa"
VQAV2_REMOTES = (
    Remote("v2_Questions_Val_mscoco.zip", url=f"{_VQA_BASE}/v2_Questions_Val_mscoco.zip"),
    Remote("v2_Annotations_Val_mscoco.zip", url=f"{_VQA_BASE}/v2_Annotations_Val_mscoco.zip"),
    Remote("v2_Questions_Train_mscoco.zip", url=f"{_VQA_BASE}/v2_Questions_Train_mscoco.zip"),
    Remote("v2_Annotations_Train_mscoco.zip", url=f"{_VQA_BASE}/v2_Annotations_Train_mscoco.zip"),
)
TEXTVQA_REMOTES = tuple(
    Remote(
        f"TextVQA_0.5.1_{split}.json", url=f"https://dl.fbaipublicfiles.com/textvqa/data/TextVQA_0.5.1_{split}.json"
    )
    for split in ("train", "val")
)


def _qa_record(sample_id: str, question: str, answer: str, image: str, metadata: dict) -> dict:
    return {
        "id": sample_id,
        "conversations": [
            {"from": "user", "value": f"<image>\n{question.strip()}\n{VQA_PROMPT}"},
            {"from": "assistant", "value": answer},
        ],
        "image": image,
        "metadata": metadata,
    }


def convert_vqav2(input_dir: Path, output_dir: Path, limit: int | None = None, media_dir: Path | None = None) -> dict:
    counts = {}
    for split in ("train", "val"):
        try:
            q_path = find_file(input_dir, f"v2_OpenEnded_mscoco_{split}2014_questions.json", what="VQAv2 questions")
            a_path = find_file(input_dir, f"v2_mscoco_{split}2014_annotations.json", what="VQAv2 annotations")
        except Exception:
            continue
        questions = load_json(q_path)
        subtype = questions.get("data_subtype", f"{split}2014")
        answers = {a["question_id"]: a for a in load_json(a_path)["annotations"]}
        root = media_dir or q_path.parent
        records = (
            _qa_record(
                f"vqav2-{q['question_id']}",
                q["question"],
                answers[q["question_id"]]["multiple_choice_answer"],
                media_path(root, f"{subtype}/COCO_{subtype}_{q['image_id']:012d}.jpg", output_dir),
                {
                    "source": "vqav2",
                    "task": "vqa",
                    "question_id": q["question_id"],
                    "answers": [a["answer"] for a in answers[q["question_id"]]["answers"]],
                    "answer_type": answers[q["question_id"]].get("answer_type"),
                    "split": split,
                },
            )
            for q in questions["questions"]
            if q["question_id"] in answers
        )
        counts[f"instruct_{split}"] = write_jsonl(output_dir / f"instruct_{split}.jsonl", records, limit)
    if not counts:
        find_file(input_dir, "v2_OpenEnded_mscoco_*_questions.json", what="VQAv2 question files")
    return counts


def convert_textvqa(
    input_dir: Path, output_dir: Path, limit: int | None = None, media_dir: Path | None = None
) -> dict:
    counts = {}
    for split in ("train", "val"):
        try:
            path = find_file(input_dir, f"TextVQA_0.5.1_{split}.json", what="TextVQA annotations")
        except Exception:
            continue
        root = media_dir or path.parent
        records = (
            _qa_record(
                f"textvqa-{item['question_id']}",
                item["question"],
                most_common(item["answers"]),
                media_path(root, f"train_images/{item['image_id']}.jpg", output_dir),
                {
                    "source": "textvqa",
                    "task": "textvqa",
                    "question_id": item["question_id"],
                    "answers": item["answers"],
                    "split": split,
                },
            )
            for item in load_json(path)["data"]
        )
        counts[f"instruct_{split}"] = write_jsonl(output_dir / f"instruct_{split}.jsonl", records, limit)
    if not counts:
        find_file(input_dir, "TextVQA_*.json", what="TextVQA files")
    return counts
