"""Small synthetic training data for the training tests: per-modality files (image-only, audio-only) and a
"mixed" file whose every record carries BOTH an image and an audio clip, for pretraining, instruction and
preference formats."""

from __future__ import annotations

import json
from pathlib import Path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _modality(record: dict) -> str:
    if "metadata" in record:
        return record["metadata"]["modality"]
    return "image" if "images" in record else "audio"


def write_training_data(root: Path, num_train: int = 32, num_test: int = 8, seed: int = 0) -> Path:
    """Writes the synthetic dataset into `root`, then `{kind}_{image,audio,mixed}.jsonl` from its train split."""
    from openmind_hf.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(root, seed=seed, num_train=num_train, num_test=num_test)
    for kind in ("pretrain", "instruct", "preference"):
        records = _read(root / f"{kind}_train.jsonl")
        by = {m: [r for r in records if _modality(r) == m] for m in ("image", "audio")}
        _write(root / f"{kind}_image.jsonl", by["image"])
        _write(root / f"{kind}_audio.jsonl", by["audio"])
        _write(root / f"{kind}_mixed.jsonl", [_mix(kind, i, a) for i, a in zip(by["image"], by["audio"])])
    return root


def _mix(kind: str, image: dict, audio: dict) -> dict:
    if kind == "pretrain":
        return {"id": f"mix-{image['id']}", "text": f"{image['text']} and {audio['text']}",
                "image": image["image"], "audio": audio["audio"], "metadata": image["metadata"]}  # fmt: skip
    if kind == "instruct":
        question = image["conversations"][0]["value"].replace("<image>\n", "")
        return {
            "id": f"mix-{image['id']}",
            "conversations": [{"from": "user", "value": f"<image>\n<audio>\n{question}"}, image["conversations"][1]],
            "image": image["image"],
            "audio": audio["audio"],
            "metadata": image["metadata"],
        }
    prompt = image["prompt"][0]["content"]
    return {
        **image,
        "id": f"mix-{image['id']}",
        "prompt": [{"role": "user", "content": [prompt[0], {"type": "audio"}, prompt[1]]}],
        "audios": audio["audios"],
    }


def run_recipe(stage: str, argv: list[str], callbacks=None):
    """Runs `recipes/<stage>.py` on `argv` (what `python recipes/<stage>.py ARGV` does) and returns its summary."""
    from openmind_hf.training.recipe_loader import load_recipe

    recipe = load_recipe(stage)
    return recipe.main(*recipe.make_parser().parse_args_and_config(args=argv), callbacks=callbacks)


def build_recipe_trainer(stage: str, *parsed):
    """The trainer `recipes/<stage>.py` builds from its parsed dataclasses: `(trainer, processor, skip_report)`."""
    from openmind_hf.training.recipe_loader import load_recipe

    return load_recipe(stage).build_trainer(*parsed)
