"""`--cache_encoded_samples`: after a sample's first batch, later epochs neither re-encode it nor read and decode its
media again, and a train and an eval record that share an id keep their own encodings."""

from __future__ import annotations

import json

import torch
from PIL import Image

from openmind_hf.building.presets import load_tiny_tokenizer, tiny_config
from openmind_hf.building.processor import build_processor
from openmind_hf.data.dataset import OpenMindDataset
from openmind_hf.training.collators import CachedChatCollator
from openmind_hf.training.data import indexed_inputs


class CountingDataset(OpenMindDataset):
    reads = 0

    def __getitem__(self, index):
        CountingDataset.reads += 1
        return super().__getitem__(index)


def _write(path, answers, colors):
    for i, color in enumerate(colors):
        Image.new("RGB", (32, 32), color).save(path.parent / f"{path.stem}{i}.png")
    records = [
        {"id": f"s{i}", "image": f"{path.stem}{i}.png",
         "conversations": [{"from": "human", "value": "<image>\nWhat color?"}, {"from": "gpt", "value": answer}]}
        for i, answer in enumerate(answers)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _collator():
    tokenizer = load_tiny_tokenizer()
    return CachedChatCollator(build_processor(tiny_config(tokenizer), tokenizer), max_length=256)


def test_a_cached_sample_is_not_read_again(tmp_path):
    path = _write(tmp_path / "train.jsonl", ["red", "green", "blue"], ["red", "green", "blue"])
    inputs = indexed_inputs(CountingDataset(path), None, _collator())
    rows = [{"index": i} for i in inputs["train_dataset"]["index"]]
    CountingDataset.reads = 0
    first = inputs["data_collator"](rows)
    assert CountingDataset.reads == 3
    for image in tmp_path.glob("*.png"):
        image.unlink()  # a second epoch that read the media would fail now
    second = inputs["data_collator"](rows[::-1])
    assert CountingDataset.reads == 3
    assert torch.equal(second["input_ids"], first["input_ids"].flip(0))
    assert torch.equal(second["pixel_values"], first["pixel_values"].flip(0))


def test_train_and_eval_records_with_the_same_id_keep_their_own_encoding(tmp_path):
    train = _write(tmp_path / "train.jsonl", ["red"], ["red"])
    eval_ = _write(tmp_path / "eval.jsonl", ["a very different and longer answer"], ["blue"])
    inputs = indexed_inputs(OpenMindDataset(train), OpenMindDataset(eval_), _collator())
    collate = inputs["data_collator"]
    train_batch = collate([{"index": 0, "store": "train"}])
    eval_batch = collate([{"index": 0, "store": "eval"}])  # same id "s0" as the train record
    assert eval_batch["input_ids"].shape[1] > train_batch["input_ids"].shape[1]
    assert not torch.equal(eval_batch["pixel_values"], train_batch["pixel_values"])
    assert torch.equal(collate([{"index": 0, "store": "eval"}])["input_ids"], eval_batch["input_ids"])


def test_a_rejected_sample_never_lends_its_key_to_another_with_the_same_id(tmp_path):
    """Encodings are filed by position, not matched back by id: with two samples sharing an id in one batch and the
    first rejected, the second's encoding goes under its own key only."""
    from openmind_hf.processing.collator import OpenMindCollator

    path = _write(tmp_path / "train.jsonl", ["red"], ["red"])
    good = OpenMindDataset(path)[0]
    tokenizer = load_tiny_tokenizer()
    collator = CachedChatCollator(build_processor(tiny_config(tokenizer), tokenizer), on_error="skip")
    bad = {"id": good["id"], "cache_key": ("train", 0), "messages": []}  # no "kind": not a canonical sample
    batch = collator([bad, {**good, "cache_key": ("train", 1)}])
    assert batch["input_ids"].shape[0] == 1 and collator.stats["rejected"] == 1
    assert collator.is_cached(("train", 1)) and not collator.is_cached(("train", 0))
    plain = OpenMindCollator(build_processor(tiny_config(tokenizer), tokenizer))
    assert torch.equal(batch["input_ids"], plain([good])["input_ids"])
