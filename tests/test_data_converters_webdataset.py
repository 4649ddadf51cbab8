"""LAION / CC12M img2dataset WebDataset shards: streamed from disk and from a real HTTP server on 127.0.0.1, corrupt
members counted with shard:member, the similarity usable by `min_quality_score`."""

from __future__ import annotations

import functools
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest
from PIL import Image

from openmind_hf.data.converters import convert_dataset, download_and_convert
from openmind_hf.data.errors import DataError
from openmind_hf.data.loading import RecordFilter, iter_samples


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), color).save(buffer, format="JPEG")
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _img2dataset_shard(path: Path, samples: list[tuple[str, bytes | None, str | None, dict | bytes]]) -> None:
    """A shard laid out as img2dataset writes it: `{key}.jpg`, `{key}.txt`, `{key}.json` per sample, in order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, jpg, caption, meta in samples:
            if jpg is not None:
                _add(tar, f"{key}.jpg", jpg)
            if caption is not None:
                _add(tar, f"{key}.txt", caption.encode())
            _add(tar, f"{key}.json", meta if isinstance(meta, bytes) else json.dumps(meta).encode())


def _meta(key: str, similarity: float | None = None, **extra) -> dict:
    meta = {"url": f"https://example.com/{key}.jpg", "key": key, "status": "success", "error_message": None,
            "width": 12, "height": 10, "original_width": 120, "original_height": 100, **extra}  # fmt: skip
    if similarity is not None:
        meta["similarity"] = similarity
    return meta


def _laion_shards(folder: Path) -> None:
    good = _jpeg((200, 10, 10))
    _img2dataset_shard(
        folder / "00000.tar",
        [
            ("000000000", good, "A red  square\n", _meta("000000000", 0.35, caption="A red square")),
            ("000000001", good, "a low-similarity caption", _meta("000000001", 0.21)),
            ("000000002", good[: len(good) // 2], "truncated jpeg", _meta("000000002", 0.40)),
            ("000000003", good, "broken json", b"{not json"),
            ("000000004", None, "no image at all", _meta("000000004", 0.5)),
        ],
    )
    _img2dataset_shard(folder / "00001.tar", [("000010000", good, " ", _meta("000010000", 0.3))])


def test_laion_shards_stream_into_our_shards_with_quality_scores(tmp_path):
    _laion_shards(tmp_path / "shards")
    (tmp_path / "shards" / "00000_stats.json").write_text("{}")  # img2dataset's side files are ignored
    counts = convert_dataset("laion", tmp_path / "shards", tmp_path / "out")
    assert counts["pretrain_train"] == 2 and counts["shards"] == 2 and counts["invalid"] == 4
    shard = str(tmp_path / "shards" / "00000.tar")
    assert f"{shard}:000000002.jpg: cannot decode image" in counts["invalid_examples"][0]
    assert f"{shard}:000000003.json is not valid JSON" in counts["invalid_examples"][1]
    assert f"{shard}:000000004: no image member" in counts["invalid_examples"][2]
    assert "00001.tar:000010000: no caption" in counts["invalid_examples"][3]
    assert not list((tmp_path / "shards").glob("0000*/")), "input shards must not be extracted"

    out = tmp_path / "out" / "pretrain_train"
    samples = list(iter_samples(out, decode=True))
    assert [s["id"] for s in samples] == ["laion-00000-000000000", "laion-00000-000000001"]
    assert samples[0]["messages"][1]["content"][0]["text"] == "A red square"
    assert samples[0]["images"][0].size == (12, 10) and samples[0]["images"][0].getpixel((6, 5))[0] > 150
    assert samples[0]["metadata"]["quality_score"] == 0.35 and samples[0]["metadata"]["url"].endswith("0.jpg")

    keep = RecordFilter(min_quality_score=0.3)
    assert [s["id"] for s in iter_samples(out, record_filter=keep)] == ["laion-00000-000000000"]
    assert keep.filtered == 1
    assert not list(out.glob("*.part"))


def test_cc12m_shards_without_a_score_and_a_truncated_shard(tmp_path):
    jpg = _jpeg((0, 0, 255))
    _img2dataset_shard(
        tmp_path / "in" / "00000.tar",
        [(f"{i:09d}", jpg, f"caption {i}", _meta(f"{i:09d}", caption=f"caption {i}")) for i in range(3)],
    )
    with tarfile.open(tmp_path / "in" / "00000.tar") as tar:
        cut = tar.getmember("000000001.txt").offset_data + 3
    data = (tmp_path / "in" / "00000.tar").read_bytes()
    (tmp_path / "in" / "00000.tar").write_bytes(data[:cut])  # an interrupted download: cut inside sample 2
    counts = convert_dataset("cc12m", tmp_path / "in", tmp_path / "out")
    assert counts["pretrain_train"] == 1 and counts["invalid"] == 1
    assert "00000.tar:000000001.txt: shard unreadable at or after this member" in counts["invalid_examples"][0]
    sample = next(iter_samples(tmp_path / "out" / "pretrain_train", record_filter=RecordFilter(min_quality_score=0.9)))
    assert "quality_score" not in sample["metadata"] and sample["metadata"]["source"] == "cc12m"  # kept: no score


def test_laion_limit_and_missing_shards(tmp_path):
    _laion_shards(tmp_path / "shards")
    assert convert_dataset("laion", tmp_path / "shards", tmp_path / "out", limit=1)["pretrain_train"] == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .tar shards under .*img2dataset"):
        convert_dataset("laion", tmp_path / "empty", tmp_path / "o2")
    with pytest.raises(DataError, match="no .tar shards under .*raw"):
        download_and_convert("laion", tmp_path / "o3")  # nothing to download: shards are made by img2dataset


@pytest.fixture()
def local_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving `tmp_path/www`."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_laion_shards_streamed_from_urls(local_server, tmp_path):
    root, base = local_server
    _laion_shards(root / "laion")
    counts = convert_dataset("laion", f"{base}/laion/{{00000..00001}}.tar", tmp_path / "out")
    assert counts["pretrain_train"] == 2 and counts["shards"] == 2 and counts["invalid"] == 4
    assert f"{base}/laion/00000.tar:000000002.jpg" in counts["invalid_examples"][0]
    assert sorted(p.name for p in (tmp_path / "out" / "pretrain_train").iterdir()) == ["00000.tar", "00001.tar"]
    with pytest.raises(ValueError, match="converts local files only"):
        convert_dataset("gsm8k", f"{base}/test.jsonl", tmp_path / "o2")


def test_cli_list_shows_the_new_sets_with_their_formats(capsys):
    from openmind_hf.cli import main

    assert main(["data", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "pretrain JSONL (video span)" in lines["webvid"] and "pretrain JSONL (video span)" in lines["howto100m"]
    assert "pretrain WebDataset shards" in lines["laion"] and "pretrain WebDataset shards" in lines["cc12m"]
    assert "pretrain + instruct JSONL (image)" in lines["visual-genome"]
    assert "instruct JSONL (reasoning)" in lines["math"]
