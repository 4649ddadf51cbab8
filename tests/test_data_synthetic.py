"""The synthetic demo data: deterministic, correct (answers can be read back from the media), closed vocabulary."""

from __future__ import annotations

import filecmp
import json
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from openmind_hf.data.loading import iter_samples
from openmind_hf.data.synthetic import (
    COLORS,
    PITCHES,
    SYNTHETIC_VOCABULARY,
    vocabulary_words,
    write_synthetic_dataset,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    manifest = write_synthetic_dataset(root, seed=7, num_train=96, num_test=32)
    return root, manifest


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_same_seed_same_bytes_other_seed_other_data(dataset, tmp_path):
    root, _ = dataset
    again = write_synthetic_dataset(tmp_path / "again", seed=7, num_train=96, num_test=32)
    comparison = filecmp.dircmp(root, tmp_path / "again")
    assert not comparison.diff_files and not comparison.left_only and not comparison.right_only
    assert all(not filecmp.dircmp(root / d, tmp_path / "again" / d).diff_files for d in ("images", "audio"))
    assert again["splits"]["train"]["num_samples"] == 96
    write_synthetic_dataset(tmp_path / "other", seed=8, num_train=96, num_test=32)
    assert (root / "instruct_train.jsonl").read_bytes() != (tmp_path / "other" / "instruct_train.jsonl").read_bytes()


def test_every_emitted_word_is_in_the_vocabulary(dataset):
    root, manifest = dataset
    texts = []
    for path in root.glob("*.jsonl"):
        for record in _lines(path):
            texts.append(record.get("text", ""))
            for turn in record.get("conversations", []):
                texts += [
                    turn["value"].replace("<image>", "").replace("<audio>", ""),
                    turn.get("reasoning_content", ""),
                ]
            for key in ("prompt", "chosen", "rejected"):
                texts += [b["text"] for m in record.get(key, []) for b in m["content"] if b["type"] == "text"]
    words = Counter(w for t in texts for w in vocabulary_words(t))
    assert set(words) <= set(SYNTHETIC_VOCABULARY), set(words) - set(SYNTHETIC_VOCABULARY)
    assert manifest["vocabulary"] == list(SYNTHETIC_VOCABULARY)


def test_tasks_answers_and_chance_level(dataset):
    root, _ = dataset
    records = _lines(root / "instruct_train.jsonl") + _lines(root / "instruct_test.jsonl")
    assert {r["metadata"]["task"] for r in records} == {"image", "audio", "reasoning"}
    by_question: dict[str, Counter] = {}
    for record in records:
        user, assistant = record["conversations"]
        answer = assistant["value"]
        assert len(answer.split()) == 1 and answer == record["metadata"]["answer"]
        question = user["value"].split("\n", 1)[1]
        by_question.setdefault(question, Counter())[answer] += 1
        assert ("reasoning_content" in assistant) == (record["metadata"]["task"] == "reasoning")
    # each question draws from a closed set of four answers: the commonest answer is far from always right
    for question, answers in by_question.items():
        if sum(answers.values()) >= 12:
            assert max(answers.values()) / sum(answers.values()) < 0.6, (question, answers)


def _count_blobs(image: Image.Image) -> int:
    """Connected non-white regions (4-neighbourhood), by flood fill."""
    mask = np.asarray(image.convert("L")) < 200
    seen = np.zeros_like(mask)
    blobs = 0
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        blobs += 1
        stack = [(y, x)]
        while stack:
            cy, cx = stack.pop()
            if 0 <= cy < mask.shape[0] and 0 <= cx < mask.shape[1] and mask[cy, cx] and not seen[cy, cx]:
                seen[cy, cx] = True
                stack += [(cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)]
    return blobs


def _count_tones(clip: np.ndarray, rate: int) -> tuple[int, float]:
    """Bursts of energy (10 ms frames over a threshold) and the dominant frequency."""
    frames = clip[: len(clip) // 160 * 160].reshape(-1, 160)
    loud = (np.sqrt((frames**2).mean(axis=1)) > 0.1).astype(int)
    bursts = int((np.diff(np.concatenate([[0], loud])) == 1).sum())
    peak = np.argmax(np.abs(np.fft.rfft(clip))) * rate / len(clip)
    return bursts, peak


def test_answers_can_be_read_back_from_the_media(dataset):
    root, _ = dataset
    checked = Counter()
    for record in _lines(root / "pretrain_train.jsonl"):
        count = int(record["text"].split()[0])
        if "image" in record:
            image = Image.open(root / record["image"])
            assert image.size == (64, 64) and _count_blobs(image) == count
            color = record["text"].split()[1]
            pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
            ink = pixels[(pixels < 200).any(axis=1)]
            assert np.abs(ink.mean(axis=0) - COLORS[color]).max() < 40
            checked["image"] += 1
        else:
            clip, rate = sf.read(root / record["audio"], dtype="float32")
            assert rate == 16_000 and clip.shape == (24_000,)
            bursts, peak = _count_tones(clip, rate)
            assert bursts == count
            assert abs(peak - PITCHES[record["text"].split()[1]]) < 10
            checked["audio"] += 1
    assert checked["image"] > 20 and checked["audio"] > 10


def test_all_files_load_and_preference_pairs_are_well_formed(dataset):
    root, _ = dataset
    for name in ("pretrain_train.jsonl", "instruct_test.jsonl"):
        samples = list(iter_samples(root / name, decode=True))
        assert samples and all((s["images"] or s["audios"]) for s in samples)
    for pair in _lines(root / "preference_train.jsonl"):
        chosen, rejected = pair["chosen"][0]["content"][0]["text"], pair["rejected"][0]["content"][0]["text"]
        assert chosen == pair["answer"] != rejected
        media = pair.get("images", []) + pair.get("audios", [])
        assert len(media) == 1 and (root / media[0]).exists()


def test_cli_writes_the_dataset(tmp_path, capsys):
    from openmind_hf.cli import main

    out = tmp_path / "demo"
    assert main(["data", "synthetic", "--output", str(out), "--seed", "3", "--num-train", "8", "--num-test", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["splits"]["test"]["num_samples"] == 4
    assert len((out / "instruct_train.jsonl").read_text().splitlines()) == 8
    assert json.loads((out / "manifest.json").read_text())["seed"] == 3
