"""Real photographs learn quickly (issue 14 item 9): brick / grass / gravel texture patches cut from scikit-image's
bundled photos (no download), asked as a 3-way question, trained with `recipes/sft.py` and
`recipes/configs/tiny/sft.yaml` for a fixed number of steps, then scored on patches from the other half of each photo.

Measured (seed 0, 60 steps, 3 x 128 training patches): held-out accuracy 0.81 with the width-scaled init; 0.64 with
transformers' default 0.02 init, which never answered "grass". Chance is 1/3.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (the test extra) bundles the photos")

from openmind_hf.data.dataset import OpenMindDataset  # noqa: E402
from openmind_hf.training.demo import held_out_accuracy  # noqa: E402
from openmind_hf.training.recipe_loader import load_recipe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TEXTURES = ("brick", "grass", "gravel")


def write_texture_patches(root: Path, num_train: int = 128, num_test: int = 30, size: int = 48, seed: int = 0):
    """`train.jsonl` / `test.jsonl` of "What texture is this?" records; training patches come from the left half of
    each 512 x 512 photo, test patches from the right half, so no test pixel was seen in training."""
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, count, x0 in (("train", num_train, 0), ("test", num_test, 256)):
        records = []
        for label in TEXTURES:
            photo = getattr(skimage_data, label)()  # [512, 512] uint8 grey
            for i in range(count):
                y, x = rng.integers(0, 512 - size), x0 + rng.integers(0, 256 - size)
                name = f"images/{split}-{label}-{i:03d}.png"
                Image.fromarray(photo[y : y + size, x : x + size]).convert("RGB").save(root / name)
                records.append({"id": f"{split}-{label}-{i}", "image": name,
                                "conversations": [{"from": "user", "value": "<image>\nWhat texture is this?"},
                                                  {"from": "assistant", "value": label}],
                                "metadata": {"task": "image", "answer": label}})  # fmt: skip
        rng.shuffle(records)
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_tiny_preset_learns_real_textures_in_60_steps(tmp_path):
    write_texture_patches(tmp_path / "data")
    recipe = load_recipe("sft")
    flags = {"config": REPO / "recipes" / "configs" / "tiny" / "sft.yaml", "dataset_name": tmp_path / "data" / "train.jsonl",
             "output_dir": tmp_path / "run", "max_steps": 60, "save_strategy": "no", "disable_tqdm": "true"}  # fmt: skip
    argv = [item for key, value in flags.items() for item in (f"--{key}", str(value))]
    model_args, data_args, training_args = recipe.make_parser().parse_args_and_config(args=argv)
    recipe.main(model_args, data_args, training_args)

    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "run")
    processor = AutoProcessor.from_pretrained(tmp_path / "run")
    test = OpenMindDataset(str(tmp_path / "data" / "test.jsonl"))
    result = held_out_accuracy(model, processor, [test[i] for i in range(len(test))])
    right = Counter(r["expected"] for r in result["samples"] if r["correct"])
    assert result["accuracy"]["image"] >= 0.75, (result["accuracy"], right)  # chance 0.33; measured 0.81
    assert set(right) == set(TEXTURES), right  # every class is told apart, not two of three


def test_small_preset_has_tens_of_millions_of_parameters_and_trains_on_a_real_image():
    import torch

    from openmind_hf.building.presets import build_preset

    model, processor = build_preset("small")
    assert 20e6 < sum(p.numel() for p in model.parameters()) < 60e6
    photo = skimage_data.brick()[:64, :64]
    messages = [{"role": "user", "content": [{"type": "image", "image": np.stack([photo] * 3, -1)},
                                             {"type": "text", "text": "What texture is this?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "brick"}]}]  # fmt: skip
    batch = processor.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
    model.train()
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert model.model.vision_tower.embeddings.patch_embedding.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="Unknown preset 'huge'.*tiny, small"):
        build_preset("huge")


def test_small_yaml_runs_the_sft_recipe_on_real_images(tmp_path):
    write_texture_patches(tmp_path / "data", num_train=8, num_test=1)
    recipe = load_recipe("sft")
    flags = {"config": REPO / "recipes" / "configs" / "small" / "sft.yaml", "dataset_name": tmp_path / "data" / "train.jsonl",
             "output_dir": tmp_path / "run", "max_steps": 3, "save_strategy": "no", "disable_tqdm": "true"}  # fmt: skip
    argv = [item for key, value in flags.items() for item in (f"--{key}", str(value))]
    model_args, data_args, training_args = recipe.make_parser().parse_args_and_config(args=argv)
    assert model_args.preset == "small" and training_args.warmup_steps == 10
    summary = recipe.main(model_args, data_args, training_args)
    assert summary.global_step == 3 and np.isfinite(summary.metrics["train_loss"])
    assert 20e6 < sum(v["trainable"] for v in summary.trainable_parameters.values()) < 60e6  # everything trains
