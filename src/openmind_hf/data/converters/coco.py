"""COCO captions (`annotations/captions_{train,val}2017.json`) -> pretraining and instruction JSONL.

Upstream format: `{"images": [{"id", "file_name", ...}], "annotations": [{"id", "image_id", "caption"}]}`; the
pictures are `{split}2017/{file_name}` next to the `annotations/` folder.
"""

from __future__ import annotations

from pathlib import Path

from .common import Remote, find_file, load_json, media_path, write_jsonl

REMOTES = (
    Remote(
        "annotations_trainval2017.zip",
        url="http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
    ),
)
PROMPT = "Describe the image in one sentence."


def convert(input_dir: Path, output_dir: Path, limit: int | None = None, media_dir: Path | None = None) -> dict:
    """Write `pretrain_{split}.jsonl` (one record per caption) and `instruct_{split}.jsonl` (one per image, all
    captions in `metadata.references` for CIDEr)."""
    counts = {}
    for split in ("train", "val"):
        try:
            path = find_file(input_dir, f"captions_{split}2017.json", what=f"COCO {split} captions")
        except Exception:
            continue
        data = load_json(path)
        root = media_dir or path.parent.parent  # annotations/ sits next to train2017/ and val2017/
        files = {image["id"]: image["file_name"] for image in data["images"]}
        captions: dict[int, list[str]] = {}
        for ann in data["annotations"]:
            captions.setdefault(ann["image_id"], []).append(ann["caption"].strip())

        def image(image_id: int, root=root, split=split, files=files) -> str:
            return media_path(root, f"{split}2017/{files[image_id]}", output_dir)

        pretrain = (
            {
                "id": f"coco-{ann['id']}",
                "text": ann["caption"].strip(),
                "image": image(ann["image_id"]),
                "metadata": {"source": "coco", "image_id": ann["image_id"], "split": split},
            }
            for ann in data["annotations"]
        )
        instruct = (
            {
                "id": f"coco-image-{image_id}",
                "conversations": [
                    {"from": "user", "value": f"<image>\n{PROMPT}"},
                    {"from": "assistant", "value": refs[0]},
                ],
                "image": image(image_id),
                "metadata": {"source": "coco", "task": "caption", "references": refs, "split": split},
            }
            for image_id, refs in captions.items()
        )
        counts[f"pretrain_{split}"] = write_jsonl(output_dir / f"pretrain_{split}.jsonl", pretrain, limit)
        counts[f"instruct_{split}"] = write_jsonl(output_dir / f"instruct_{split}.jsonl", instruct, limit)
    if not counts:
        find_file(input_dir, "captions_*2017.json", what="COCO captions files")  # raises, naming what is missing
    return counts
