"""Visual Genome 1.2 region descriptions and QA -> pretraining and instruction JSONL.

Upstream files (each a JSON array, zipped on visualgenome.org):

- `image_data.json`: `[{"image_id", "url", "width", "height", ...}]`; the URL's last two parts are where the
  picture lies in the unpacked image zips (`VG_100K/1.jpg` or `VG_100K_2/1.jpg`);
- `region_descriptions.json`: `[{"id": image_id, "regions": [{"region_id", "image_id", "phrase", "x", "y",
  "width", "height"}]}]` (boxes in pixels);
- `question_answers.json`: `[{"id": image_id, "qas": [{"qa_id", "image_id", "question", "answer"}]}]`.

Outputs: `pretrain_train.jsonl` (an image captioned by its largest distinct region phrases), `instruct_regions_train`
(region captioning as LLaVA-1.5 does it: a box in coordinates normalised to [0, 1] -> its phrase) and
`instruct_train` (the QA pairs of an image as one multi-turn conversation).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .common import Remote, count_invalid, find_file, load_json, media_path, write_jsonl

_BASE = "http://visualgenome.org/static/data/dataset"
REMOTES = tuple(
    Remote(f"{name}.json.zip", url=f"{_BASE}/{name}.json.zip")
    for name in ("image_data", "region_descriptions", "question_answers")
)
REGION_PROMPT = "Please provide a short description for this region: "
MAX_TURNS = 10  # regions / QA pairs per conversation: VG has ~50 regions and ~17 QAs per image
MAX_CAPTION_PHRASES = 5


def _images(input_dir: Path) -> dict[int, dict]:
    path = find_file(input_dir, "image_data.json", what="Visual Genome image_data.json")
    images = {}
    for item in load_json(path):
        image_id = item.get("image_id", item.get("id"))
        url = item.get("url") or f"VG_100K/{image_id}.jpg"
        images[int(image_id)] = {
            "file": "/".join(url.split("/")[-2:]),
            "width": item["width"],
            "height": item["height"],
        }
    return images


def normalized_box(region: dict, width: float, height: float) -> list[float]:
    """`x, y, width, height` in pixels -> `[x0, y0, x1, y1]` in [0, 1], two decimals (LLaVA-1.5's VG format)."""

    def clip(value: float) -> float:
        return round(min(max(value, 0.0), 1.0), 2)

    x, y, w, h = (float(region[k]) for k in ("x", "y", "width", "height"))
    return [clip(x / width), clip(y / height), clip((x + w) / width), clip((y + h) / height)]


def _sentence(phrase: str) -> str:
    phrase = " ".join(phrase.split())
    phrase = phrase[:1].upper() + phrase[1:]
    return phrase if phrase.endswith((".", "!", "?")) else phrase + "."


def _region_records(path: Path, images: dict, root: Path, output_dir: Path, counts: dict):
    """Yields `(pretraining record, region-captioning record)` per image."""
    for index, item in enumerate(load_json(path)):
        image_id = int(item.get("id", item.get("image_id", -1)))
        image = images.get(image_id)
        regions = [r for r in item.get("regions") or [] if str(r.get("phrase") or "").strip()]
        if image is None or not regions:
            count_invalid(counts, f"{path}[{index}] (image {image_id}): no image_data entry or no phrase")
            continue
        regions.sort(key=lambda r: -float(r["width"]) * float(r["height"]))  # largest first: the scene's gist
        seen, phrases = set(), []
        for region in regions:
            key = " ".join(region["phrase"].lower().split()).rstrip(".")
            if key not in seen:
                seen.add(key)
                phrases.append(region)
        picture = media_path(root, image["file"], output_dir)
        meta = {"source": "visual_genome", "image_id": image_id}
        caption = " ".join(_sentence(r["phrase"]) for r in phrases[:MAX_CAPTION_PHRASES])
        turns = []
        for number, region in enumerate(phrases[:MAX_TURNS]):
            box = normalized_box(region, image["width"], image["height"])
            prompt = REGION_PROMPT + "[" + ", ".join(f"{v:.2f}" for v in box) + "]"
            turns.append({"from": "user", "value": f"<image>\n{prompt}" if number == 0 else prompt})
            turns.append({"from": "assistant", "value": _sentence(region["phrase"])})
        yield (
            {"id": f"vg-{image_id}", "text": caption, "image": picture, "metadata": meta},
            {"id": f"vg-regions-{image_id}", "conversations": turns, "image": picture, "metadata": meta},
        )


def _qa_records(path: Path, images: dict, root: Path, output_dir: Path, counts: dict):
    for index, item in enumerate(load_json(path)):
        image_id = int(item.get("id", item.get("image_id", -1)))
        image = images.get(image_id)
        qas = [q for q in item.get("qas") or [] if str(q.get("question")).strip() and str(q.get("answer")).strip()]
        if image is None or not qas:
            if image is None:  # images without QA are common upstream and not an error
                count_invalid(counts, f"{path}[{index}] (image {image_id}): no image_data entry")
            continue
        turns = []
        for number, qa in enumerate(qas[:MAX_TURNS]):
            question = qa["question"].strip()
            turns.append({"from": "user", "value": f"<image>\n{question}" if number == 0 else question})
            turns.append({"from": "assistant", "value": qa["answer"].strip()})
        yield {
            "id": f"vg-qa-{image_id}",
            "conversations": turns,
            "image": media_path(root, image["file"], output_dir),
            "metadata": {
                "source": "visual_genome",
                "task": "vqa",
                "image_id": image_id,
                "qa_ids": [q["qa_id"] for q in qas[:MAX_TURNS]],
            },
        }


def convert(input_dir: Path, output_dir: Path, limit: int | None = None, media_dir: Path | None = None) -> dict:
    images = _images(input_dir)
    counts: dict = {"invalid": 0, "invalid_examples": []}
    regions = sorted(Path(input_dir).rglob("region_descriptions.json"))
    qas = sorted(Path(input_dir).rglob("question_answers.json"))
    if not regions and not qas:
        raise DataError(
            f"no region_descriptions.json or question_answers.json under {input_dir}",
            source=str(input_dir),
            hint="download and unpack them next to image_data.json",
        )
    if regions:
        root = media_dir or regions[0].parent
        pairs = list(_region_records(regions[0], images, root, output_dir, counts))
        counts["pretrain_train"] = write_jsonl(output_dir / "pretrain_train.jsonl", (p for p, _ in pairs), limit)
        counts["instruct_regions_train"] = write_jsonl(
            output_dir / "instruct_regions_train.jsonl", (r for _, r in pairs), limit
        )
    if qas:
        root = media_dir or qas[0].parent
        records = _qa_records(qas[0], images, root, output_dir, counts)
        counts["instruct_train"] = write_jsonl(output_dir / "instruct_train.jsonl", records, limit)
    return counts


__all__ = ["MAX_TURNS", "REGION_PROMPT", "REMOTES", "convert", "normalized_box"]
