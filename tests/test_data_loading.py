"""Loaders (JSONL / JSON / Parquet / folders / WebDataset tar / `datasets`), filters, and the bad-data policy."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from openmind_hf.data.dataset import OpenMindDataset, OpenMindIterableDataset
from openmind_hf.data.errors import DataError
from openmind_hf.data.loading import RecordFilter, iter_records, iter_samples
from openmind_hf.data.policy import SkipReport
from openmind_hf.data.synthetic import write_faulty_dataset


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    return write_faulty_dataset(tmp_path_factory.mktemp("faulty"), num_good=20, seed=3)


def _records(n: int) -> list[dict]:
    return [
        {"id": f"r{i}", "text": f"caption {i}", "image": f"img{i}.png", "metadata": {"quality_score": i / 10}}
        for i in range(n)
    ]


def _write_images(folder, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(folder / f"img{i}.png")


def test_jsonl_json_parquet_and_folder_give_the_same_samples(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = _records(6)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "part1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:2]) + "\n")
    (tmp_path / "a" / "part2.json").write_text(json.dumps(records[2:4]))
    pq.write_table(pa.Table.from_pylist(records[4:]), tmp_path / "a" / "part3.parquet")
    _write_images(tmp_path / "a", 6)
    samples = list(iter_samples(tmp_path / "a", decode=True))
    assert [s["id"] for s in samples] == [f"r{i}" for i in range(6)]
    # relative paths resolve against each file's folder by default ...
    assert samples[5]["images"][0].getpixel((0, 0)) == (5, 0, 0)
    refs = list(iter_records(tmp_path / "a"))
    assert [(r.source.rsplit("/", 1)[1], r.line) for r in refs[:3]] == [
        ("part1.jsonl", 1),
        ("part1.jsonl", 2),
        ("part2.json", 1),
    ]
    # ... or against an explicit media_root
    other = tmp_path / "media"
    _write_images(other, 6)
    resolved = next(iter_samples(tmp_path / "a" / "part1.jsonl", media_root=other))
    assert resolved["images"] == [str(other / "img0.png")]


def test_invalid_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_records(1)[0]) + "\n{not json\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:2:2 .*invalid JSON"):
        list(iter_samples(path))
    report = SkipReport()
    assert len(list(iter_samples(path, on_error="skip", report=report))) == 1
    assert report.count == 1 and report.records[0].line == 2


def test_quality_filter_keeps_scores_at_or_above_the_minimum(tmp_path):
    records = _records(10) + [{"id": "none", "text": "no score", "image": "x.png"}]
    keep = RecordFilter(min_quality_score=0.7)
    assert [s["id"] for s in iter_samples(records, record_filter=keep)] == ["r7", "r8", "r9", "none"]
    assert keep.filtered == 7
    strict = RecordFilter(min_quality_score=0.7, keep_missing_score=False, kinds={"pretrain"})
    assert [s["id"] for s in iter_samples(records, record_filter=strict)] == ["r7", "r8", "r9"]


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_webdataset_tar_shard_groups_members_by_key(tmp_path):
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 200, 0)).save(png, format="PNG")
    wav = io.BytesIO()
    sf.write(wav, np.zeros(8000, np.float32), 8000, format="WAV")
    instruct = {"conversations": [{"from": "user", "value": "<image><audio>Hi"}, {"from": "gpt", "value": "ok"}]}
    path = tmp_path / "shard-000.tar"
    with tarfile.open(path, "w") as tar:
        _tar_add(tar, "s/000.png", png.getvalue())
        _tar_add(tar, "s/000.txt", b"a green square")
        _tar_add(tar, "s/000.json", json.dumps({"source": "laion", "quality_score": 0.8}).encode())
        _tar_add(tar, "s/001.jpg", b"\xff\xd8 not really a jpeg")
        _tar_add(tar, "s/001.txt", b"broken")
        _tar_add(tar, "s/002.json", json.dumps(instruct).encode())
        _tar_add(tar, "s/002.png", png.getvalue())
        _tar_add(tar, "s/002.wav", wav.getvalue())
    report = SkipReport()
    samples = list(iter_samples(path, decode=True, on_error="skip", report=report))
    assert [s["id"] for s in samples] == ["s/000", "s/002"]
    first, second = samples
    assert first["kind"] == "pretrain" and first["metadata"] == {"source": "laion", "quality_score": 0.8}
    assert first["messages"][1]["content"][0]["text"] == "a green square"
    assert first["images"][0].getpixel((0, 0)) == (0, 200, 0)
    assert second["kind"] == "instruct" and second["audios"][0].shape == (16_000,)
    assert report.ids == ["s/001"] and "cannot decode image" in report.reasons[0]


def test_datasets_sources_in_memory_and_streaming(tmp_path):
    import datasets

    records = _records(4)
    _write_images(tmp_path, 4)
    ds = datasets.Dataset.from_list(records)
    assert [s["id"] for s in iter_samples(ds, media_root=tmp_path, decode=True)] == ["r0", "r1", "r2", "r3"]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    streamed = OpenMindIterableDataset("json", data_files=str(path), streaming=True, media_root=tmp_path)
    assert [s["id"] for s in streamed] == ["r0", "r1", "r2", "r3"]


def test_raise_policy_stops_at_the_first_bad_record_with_its_location(faulty, tmp_path):
    with pytest.raises(DataError) as info:
        OpenMindDataset(faulty["path"], decode=False)  # format errors surface when the dataset is built
    assert "instruct_faulty.jsonl:" in str(info.value) and "(sample 'fault-" in str(info.value)
    # Media errors surface when the sample is read, still naming file, line and sample.
    lines = open(faulty["path"]).read().splitlines()
    path = tmp_path / "two.jsonl"
    path.write_text(lines[0] + "\n" + next(x for x in lines if "fault-truncated_jpeg" in x) + "\n")
    dataset = OpenMindDataset(path, media_root=Path(faulty["path"]).parent)
    assert dataset[0]["id"] == "train-00000"
    with pytest.raises(DataError, match=r"two\.jsonl:2 \(sample 'fault-truncated_jpeg'\): cannot decode image"):
        dataset[1]


def test_map_dataset_skip_policy_with_two_workers_reports_every_bad_record_once(faulty, tmp_path):
    dataset = OpenMindDataset(faulty["path"], on_error="skip", run_dir=tmp_path / "run")
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=list)
    for _ in range(2):  # two epochs: failures are seen again but counted once
        seen = [s["id"] for batch in loader for s in batch]
        assert len(seen) == len(dataset)
        assert not set(seen) & set(faulty["bad_ids"])
        assert set(seen) == set(faulty["good_ids"])  # bad items were replaced by good ones, never dropped
    assert dataset.skip_report.count == 5  # the main process saw only the format errors ...
    report = dataset.skip_report.collect()  # ... the media errors were seen in the workers
    assert sorted(report.ids) == sorted(faulty["bad_ids"])
    assert SkipReport.load(tmp_path / "run").count == faulty["num_bad"]
    assert f"skipped {faulty['num_bad']} record(s)" in report.summary()


def test_iterable_dataset_skip_policy_with_two_workers_never_dies(faulty, tmp_path):
    dataset = OpenMindIterableDataset(faulty["path"], on_error="skip", run_dir=tmp_path / "run")
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=list)
    seen = [s["id"] for batch in loader for s in batch]
    assert sorted(seen) == sorted(faulty["good_ids"])  # each good record exactly once across the workers
    report = SkipReport.load(tmp_path / "run")
    assert sorted(report.ids) == sorted(faulty["bad_ids"])


def test_streaming_datasets_source_with_workers_skips_bad_records(faulty, tmp_path):
    lines = [x for x in open(faulty["path"]).read().splitlines() if x.endswith("}")]  # `datasets` cannot skip bad JSON
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(lines) + "\n")
    media_root = Path(faulty["path"]).parent
    dataset = OpenMindIterableDataset(
        "json", data_files=str(path), streaming=True, media_root=media_root, on_error="skip", run_dir=tmp_path / "run"
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=list)
    seen = [s["id"] for batch in loader for s in batch]
    assert sorted(seen) == sorted(faulty["good_ids"])
    assert SkipReport.load(tmp_path / "run").count == faulty["num_bad"] - 1


def test_cli_check_reports_bad_records(faulty, capsys):
    from openmind_hf.cli import main

    assert main(["data", "check", faulty["path"]]) == 3  # non-zero: the dataset has bad records
    summary = json.loads(capsys.readouterr().out)
    assert summary["usable"] == faulty["num_good"] and summary["skipped"]["count"] == faulty["num_bad"]


def test_a_source_whose_reader_fails_ends_the_stream_cleanly_under_skip(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps({"text": "ok", "id": "a"}) + "\n{broken\n")
    report = SkipReport()
    dataset = OpenMindIterableDataset("json", data_files=str(path), on_error="skip", report=report, decode=False)
    list(dataset)  # never raises
    assert report.count == 1 and "reader of this source failed" in report.reasons[0]
    with pytest.raises(DataError, match="reader of this source failed"):
        list(OpenMindIterableDataset("json", data_files=str(path), decode=False))


def test_map_style_dataset_iteration_ends(tmp_path):
    """`for sample in OpenMindDataset(...)` visits each good sample once and stops (it used to loop forever)."""
    import json

    from openmind_hf.data.dataset import OpenMindDataset

    path = tmp_path / "chat.jsonl"
    rows = [
        {"conversations": [{"from": "user", "value": f"hi {i}"}, {"from": "gpt", "value": "ok"}]} for i in range(3)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    dataset = OpenMindDataset(str(path))
    samples = list(dataset)
    assert len(samples) == len(dataset) == 3
    with pytest.raises(IndexError):
        dataset[3]
