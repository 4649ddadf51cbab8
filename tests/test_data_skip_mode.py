"""Issue 15 item 4: skip mode never aborts, and stays fast.

One invalid-UTF-8 line or one 100k-deep JSON line is one counted skip naming file:line (and under `on_error="raise"`
a one-line error naming file:line:column); a 5 MB text field is dropped by length before anything is tokenized;
media paths outside the media root are accepted by default and refused with `confine_media_to_root`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from openmind_hf.data.dataset import OpenMindDataset, OpenMindIterableDataset
from openmind_hf.data.errors import DataError
from openmind_hf.data.loading import iter_samples
from openmind_hf.data.policy import SkipReport
from openmind_hf.data.validate import RecordChecks

DEEP = 100_000


def _chat(i: int, answer: str = "a red square", image: str | None = "ok.png") -> dict:
    record = {"id": f"good{i}", "conversations": [{"from": "human", "value": "What is it?"}, {"from": "gpt", "value": answer}]}  # fmt: skip
    if image is not None:
        record["image"] = image
        record["conversations"][0]["value"] = "<image>\n" + record["conversations"][0]["value"]
    return record


@pytest.fixture
def hostile(tmp_path):
    """4 good records around an invalid-UTF-8 line (line 2) and a 100k-deep JSON line (line 4)."""
    Image.new("RGB", (8, 8), (200, 0, 0)).save(tmp_path / "ok.png")
    lines = [
        json.dumps(_chat(0)).encode(),
        b'{"id": "latin1", "text": "caf\xe9 cr\xe8me"}',  # Latin-1 bytes: invalid UTF-8 at column 30
        json.dumps(_chat(1)).encode(),
        b"[" * DEEP + b"]" * DEEP,
        json.dumps(_chat(2)).encode(),
        json.dumps(_chat(3)).encode(),
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_bad_bytes_and_deep_json_are_counted_skips_with_file_and_line(hostile):
    report = SkipReport()
    dataset = OpenMindDataset(hostile, on_error="skip", report=report)
    assert [dataset[i]["id"] for i in range(len(dataset))] == ["good0", "good1", "good2", "good3"]
    where = {(r.source, r.line): r.reason for r in report.records}
    assert report.count == 2  # bad lines injected: 2, counted: 2
    assert "invalid UTF-8" in where[(str(hostile), 2)] and "column 30" in where[(str(hostile), 2)]
    assert "nested too deeply" in where[(str(hostile), 4)]

    # the streaming dataset and the plain sample iterator carry on the same way
    streamed = SkipReport()
    assert len(list(OpenMindIterableDataset(hostile, on_error="skip", report=streamed))) == 4
    assert streamed.count == 2
    assert len(list(iter_samples(hostile, on_error="skip", report=SkipReport()))) == 4


def test_under_raise_each_bad_line_is_one_line_naming_file_line_column(hostile, tmp_path):
    with pytest.raises(DataError) as caught:
        OpenMindDataset(hostile)
    message = str(caught.value)
    assert message.startswith(f"{hostile}:2:30 ") and "invalid UTF-8 (byte 0xe9" in message and "\n" not in message
    assert caught.value.__cause__ is None  # no chained UnicodeDecodeError traceback

    deep = tmp_path / "deep.jsonl"
    deep.write_bytes(json.dumps(_chat(0)).encode() + b"\n" + b'{"a": ' + b"[" * DEEP + b"]" * DEEP + b"}\n")
    with pytest.raises(DataError, match=rf"^{deep}:2:1 .*nested too deeply.*flatten the record") as caught:
        OpenMindDataset(deep)
    assert caught.value.__cause__ is None


def test_a_5mb_text_field_is_dropped_by_length_before_tokenizing(tmp_path):
    from openmind_hf.building.presets import load_tiny_tokenizer, tiny_config
    from openmind_hf.building.processor import build_processor
    from openmind_hf.processing.collator import OpenMindCollator
    from openmind_hf.training.data import indexed_inputs

    records = [_chat(i, image=None) for i in range(3)]
    records.insert(1, _chat(9, answer="word " * 1_000_000, image=None) | {"id": "huge"})  # 5 MB of text
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = SkipReport()
    store = OpenMindDataset(path, report=report)  # default on_error="raise": a length drop is not an error
    tokenizer = load_tiny_tokenizer()
    collator = OpenMindCollator(build_processor(tiny_config(tokenizer), tokenizer), max_length=512)
    seen = []
    collator.encode = lambda sample, encode=collator.encode: seen.append(sample["id"]) or encode(sample)

    inputs = indexed_inputs(store, None, collator)
    assert inputs["train_dataset"]["index"] == [0, 2, 3]  # the 5 MB record never becomes a training row
    (record,) = report.records
    assert record.sample_id == "huge" and record.line == 2
    assert record.reason.startswith("50000")  # the count of characters, about 5 MB
    assert "characters of text > 8192 (16 per token x max_length 512): dropped before tokenizing" in record.reason
    batch = inputs["data_collator"]([{"index": i} for i in inputs["train_dataset"]["index"]])
    assert batch["input_ids"].shape[0] == 3 and "huge" not in seen


@pytest.fixture
def outside(tmp_path):
    """A media root holding a record with a symlink to a picture outside it, and one with an absolute path."""
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir(), elsewhere.mkdir()
    Image.new("RGB", (8, 8)).save(root / "inside.png")
    Image.new("RGB", (8, 8)).save(elsewhere / "secret.png")
    os.symlink(elsewhere / "secret.png", root / "link.png")
    records = [_chat(0, image="inside.png"), _chat(1, image="link.png"), _chat(2, image=str(elsewhere / "secret.png"))]
    path = root / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_media_outside_the_root_is_accepted_by_default_and_refused_when_confined(outside):
    assert len(OpenMindDataset(outside, checks=RecordChecks())) == 3  # default: paths are used as given

    report = SkipReport()
    confined = OpenMindDataset(
        outside, on_error="skip", report=report, checks=RecordChecks(confine_media_to_root=True)
    )
    assert [confined[i]["id"] for i in range(len(confined))] == ["good0"]
    assert sorted(report.ids) == ["good1", "good2"]
    assert all("outside the media root" in reason for reason in report.reasons)
    with pytest.raises(DataError, match=r"data\.jsonl:2:\d+ \(sample 'good1'\): image link\.png resolves to .*secret"):
        OpenMindDataset(outside, checks=RecordChecks(confine_media_to_root=True))


def test_media_in_hf_content_blocks_are_checked_and_confined_too(outside):
    """The checks read media wherever the record format puts them: an HF `messages` record naming a picture in a
    content block gets the same existence check and the same confinement as a top-level `image`."""
    root = outside.parent
    secret = root.parent / "elsewhere" / "secret.png"

    def hf(i, path):
        content = [{"type": "image", "image": path}, {"type": "text", "text": "What is it?"}]
        return {"id": f"hf{i}", "messages": [{"role": "user", "content": content},
                                             {"role": "assistant", "content": "a square"}]}  # fmt: skip

    path = root / "hf.jsonl"
    path.write_text(
        "".join(json.dumps(r) + "\n" for r in [hf(0, "inside.png"), hf(1, str(secret)), hf(2, "gone.png")])
    )
    assert len(OpenMindDataset(path, on_error="skip", checks=RecordChecks())) == 2  # gone.png: not found
    report = SkipReport()
    confined = OpenMindDataset(path, on_error="skip", report=report, checks=RecordChecks(confine_media_to_root=True))
    assert [confined[i]["id"] for i in range(len(confined))] == ["hf0"]
    assert sorted(report.ids) == ["hf1", "hf2"]
    assert any("outside the media root" in reason for reason in report.reasons)


def test_json_files_and_tar_shards_with_bad_bytes_or_deep_nesting_are_counted_too(tmp_path):
    import io
    import tarfile

    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a_deep.json").write_bytes(b"[" * DEEP + b"]" * DEEP)
    (folder / "b_latin1.json").write_bytes(b'[\n  {"id": "x",\n   "text": "caf\xe9"}\n]')
    with tarfile.open(folder / "c_shard.tar", "w") as tar:
        for name, data in (("s1.txt", b"fine caption"), ("s2.txt", b"caf\xe9"), ("s2.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (folder / "d_good.jsonl").write_text(json.dumps(_chat(0, image=None)) + "\n")

    report = SkipReport()
    samples = list(iter_samples(folder, on_error="skip", report=report))
    assert [s["id"] for s in samples] == ["s1", "good0"]
    assert report.count == 3  # bad items injected: 3, counted: 3
    reasons = {Path(r.source).name: r.reason for r in report.records}
    assert (
        "nested too deeply" in reasons["a_deep.json"]
        and "cannot be read: UnicodeDecodeError" in reasons["c_shard.tar"]
    )
    assert reasons["b_latin1.json"] == "invalid UTF-8 (byte 0xe9 at line 3, column 16)"
    with pytest.raises(DataError, match=r"b_latin1\.json:3:16 .*invalid UTF-8"):
        list(iter_samples(folder / "b_latin1.json"))


def test_preference_pairs_index_and_iterate_like_samples(tmp_path):
    """Both map-style datasets share one replace-bad-items rule: an index past the end raises IndexError (so a plain
    `for pair in pairs` ends) instead of wrapping around to another pair."""
    from openmind_hf.data.preference import PreferenceDataset

    pair = {"id": "p0", "prompt": "Which?", "chosen": "this one", "rejected": "that one"}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(pair) + "\n")
    pairs = PreferenceDataset(path)
    assert len(list(pairs)) == 1
    with pytest.raises(IndexError, match="out of range for a dataset of 1 pairs"):
        pairs[1]
    samples = OpenMindDataset([_chat(0, image=None)])
    assert len(list(samples)) == 1
    with pytest.raises(IndexError, match="1 samples"):
        samples[1]
