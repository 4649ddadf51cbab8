"""WebVid, HowTo100M, Visual Genome and MATH converters on fixtures in each upstream's own format; their download
path (the registered remotes' file names) served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import csv
import functools
import http.server
import json
import os
import tarfile
import threading
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from openmind_hf.data.converters import DATASETS, convert_dataset
from openmind_hf.data.converters.common import Remote, fetch
from openmind_hf.data.converters.hendrycks_math import last_boxed
from openmind_hf.data.converters.video import parse_duration
from openmind_hf.data.loading import iter_samples

SHARED_DATA = Path(os.environ.get("OPENMIND_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
MATH500 = SHARED_DATA / "math500" / "test.jsonl"


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write_video(path: Path, num_frames: int = 10, fps: int = 5, size: int = 16) -> None:
    """A tiny real MPEG-4 clip whose frame i has grey level 20 * i (2 s at 5 frames/s)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), (20 * i) % 256, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


WEBVID_HEADER = ["videoid", "contentUrl", "duration", "page_dir", "name"]
WEBVID_ROWS = [
    ["31353427", "https://ak.picdn.net/shutterstock/videos/31353427/preview/stock-footage-merida.mp4",
     "PT00H00M02S", "011201_011250", "Merida, mexico - may 23, 2017: tourists are walking near a church."],
    ["1047443473", "https://ak.picdn.net/shutterstock/videos/1047443473/preview/stock-footage-pan.mp4",
     "PT00H00M15S", "011201_011250", "Pan of a forest at dawn"],
    ["5", "https://example.invalid/5.mp4", "PT00H00M00S", "000001_000050", "zero-length clip"],
    ["6", "https://example.invalid/6.mp4", "PT00H00M09S", "000001_000050", "   "],
]  # fmt: skip


def _webvid_csv(folder: Path, name: str = "results_2M_val.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(WEBVID_HEADER)
        writer.writerows(WEBVID_ROWS)
    return folder / name


def test_webvid_csv_to_video_span_records_that_load_and_decode(tmp_path):
    raw = tmp_path / "raw"
    _webvid_csv(raw)
    _write_video(raw / "011201_011250" / "31353427.mp4")
    counts = convert_dataset("webvid", raw, tmp_path / "out")
    assert counts["pretrain_val"] == 2 and counts["invalid"] == 2
    assert "results_2M_val.csv:4: duration 'PT00H00M00S' is not positive" in counts["invalid_examples"][0]
    assert "results_2M_val.csv:5: empty caption" in counts["invalid_examples"][1]
    first, second = _read(tmp_path / "out" / "pretrain_val.jsonl")
    assert first["video"] == {"path": "../raw/011201_011250/31353427.mp4", "start": 0.0, "end": 2.0}
    assert second["video"]["end"] == 15.0 and second["metadata"]["url"].endswith("stock-footage-pan.mp4")
    # The span form goes through the normalizer and path resolution unchanged; the clip on disk decodes.
    sample = next(iter_samples(tmp_path / "out" / "pretrain_val.jsonl", decode=True, num_frames=2))
    assert sample["kind"] == "pretrain" and [b["type"] for b in sample["messages"][0]["content"]] == ["video"]
    assert len(sample["videos"][0]) == 2 and sample["videos"][0][0].size == (16, 16)
    assert sample["messages"][1]["content"][0]["text"].startswith("Merida, mexico")
    raw_sample = list(iter_samples(tmp_path / "out" / "pretrain_val.jsonl"))[1]
    assert raw_sample["videos"][0]["start"] == 0.0 and os.path.isabs(raw_sample["videos"][0]["path"])


def test_webvid_duration_parsing():
    assert (
        parse_duration("PT00H01M05S") == 65.0 and parse_duration("PT1H") == 3600.0 and parse_duration("12.5") == 12.5
    )
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_duration("two minutes")


HOWTO_CAPTIONS = {
    "-0hVTmxN-e0": {
        "start": [0.0, 1.2, 5.1],
        "end": [1.2, 2.0, 4.0],
        "text": ["so today we are going to make", "a cheese sandwich", "backwards span"],
    },
    "nVbIUDjzWY4": {"start": [3.5], "end": [7.25], "text": ["first cut the onion"]},
    "broken": {"start": [1.0, 2.0], "end": [2.0], "text": ["a", "b"]},
}


def test_howto100m_caption_segments_become_clip_records(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "raw_caption.json").write_text(json.dumps(HOWTO_CAPTIONS))
    media = tmp_path / "videos"
    _write_video(media / "-0hVTmxN-e0.mp4")
    _write_video(media / "nVbIUDjzWY4.mkv", num_frames=40)  # 8 s: its segment is 3.5-7.25 s
    counts = convert_dataset("howto100m", raw, tmp_path / "out", media_dir=media)
    assert counts["pretrain_train"] == 3 and counts["invalid"] == 2
    assert any("segment 2): empty text or bad span [5.1, 4.0]" in e for e in counts["invalid_examples"])
    assert any("'broken'" in e and "2 starts, 1 ends and 2 texts" in e for e in counts["invalid_examples"])
    records = _read(tmp_path / "out" / "pretrain_train.jsonl")
    assert [r["id"] for r in records] == [
        "howto100m--0hVTmxN-e0-0",
        "howto100m--0hVTmxN-e0-1",
        "howto100m-nVbIUDjzWY4-0",
    ]
    assert records[1]["video"] == {"path": "../videos/-0hVTmxN-e0.mp4", "start": 1.2, "end": 2.0}
    assert records[2]["video"]["path"].endswith("nVbIUDjzWY4.mkv")  # the container found on disk
    samples = list(iter_samples(tmp_path / "out" / "pretrain_train.jsonl", decode=True, num_frames=1))
    assert len(samples) == 3 and samples[1]["messages"][1]["content"][0]["text"] == "a cheese sandwich"


VG_IMAGES = [
    {"image_id": 1, "url": "https://cs.stanford.edu/people/rak248/VG_100K_2/1.jpg", "width": 80, "height": 40,
     "coco_id": None, "flickr_id": None},
    {"image_id": 2, "url": "https://cs.stanford.edu/people/rak248/VG_100K/2.jpg", "width": 40, "height": 40,
     "coco_id": 1, "flickr_id": None},
]  # fmt: skip
VG_REGIONS = [
    {"id": 1, "regions": [
        {"region_id": 1382, "width": 8, "height": 4, "image_id": 1, "phrase": "the clock is green in colour", "y": 4, "x": 40},
        {"region_id": 1383, "width": 80, "height": 20, "image_id": 1, "phrase": "shade is along the street ", "y": 20, "x": 0},
        {"region_id": 1384, "width": 4, "height": 4, "image_id": 1, "phrase": "The clock is green in colour.", "y": 0, "x": 0},
        {"region_id": 1385, "width": 100, "height": 100, "image_id": 1, "phrase": "", "y": 0, "x": 0},
    ]},
    {"id": 99, "regions": [{"region_id": 1, "width": 1, "height": 1, "image_id": 99, "phrase": "x", "y": 0, "x": 0}]},
]  # fmt: skip
VG_QAS = [
    {"id": 1, "qas": [
        {"a_objects": [], "question": "What color is the clock?", "image_id": 1, "qa_id": 986768, "answer": "Green.", "q_objects": []},
        {"a_objects": [], "question": "Where is the shade?", "image_id": 1, "qa_id": 986769, "answer": "Along the street.", "q_objects": []},
    ]},
    {"id": 2, "qas": []},
]  # fmt: skip


def _vg_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (("image_data", VG_IMAGES), ("region_descriptions", VG_REGIONS), ("question_answers", VG_QAS)):
        with zipfile.ZipFile(folder / f"{name}.json.zip", "w") as z:  # as visualgenome.org ships them
            z.writestr(f"{name}.json", json.dumps(data))


def test_visual_genome_regions_and_qa(tmp_path):
    raw = tmp_path / "raw"
    _vg_files(raw)
    media = tmp_path / "vg"
    for sub, image_id, size in (("VG_100K_2", 1, (80, 40)), ("VG_100K", 2, (40, 40))):
        (media / sub).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (0, 128, 0)).save(media / sub / f"{image_id}.jpg")
    counts = convert_dataset("visual-genome", raw, tmp_path / "out", media_dir=media)
    assert counts["pretrain_train"] == 1 and counts["instruct_regions_train"] == 1 and counts["instruct_train"] == 1
    assert counts["invalid"] == 1 and "image 99" in counts["invalid_examples"][0]
    out = tmp_path / "out"
    pretrain = next(iter_samples(out / "pretrain_train.jsonl", decode=True))
    # largest region first, the duplicate phrase (case/punctuation aside) once, the empty one dropped
    assert pretrain["messages"][1]["content"][0]["text"] == "Shade is along the street. The clock is green in colour."
    assert pretrain["images"][0].size == (80, 40)
    regions = _read(out / "instruct_regions_train.jsonl")[0]["conversations"]
    assert (
        regions[0]["value"] == "<image>\nPlease provide a short description for this region: [0.00, 0.50, 1.00, 1.00]"
    )
    assert (
        regions[2]["value"].endswith("[0.50, 0.10, 0.60, 0.20]")
        and regions[3]["value"] == "The clock is green in colour."
    )
    qa = next(iter_samples(out / "instruct_train.jsonl", decode=True))
    assert [m["role"] for m in qa["messages"]] == ["user", "assistant"] * 2
    assert qa["messages"][1]["content"][0]["text"] == "Green." and qa["metadata"]["qa_ids"] == [986768, 986769]
    assert next(iter_samples(out / "instruct_regions_train.jsonl", decode=True))["images"][0].size == (80, 40)


def _math_tree(root: Path) -> None:
    problems = {
        ("train", "algebra", "1"): {
            "problem": "What is $1+1$?",
            "level": "Level 1",
            "type": "Algebra",
            "solution": "We add: $1+1=\\boxed{2}$.",
        },
        ("train", "geometry", "7"): {
            "problem": "Find the area of a unit square.",
            "level": "Level 2",
            "type": "Geometry",
            "solution": "First guess $\\boxed{0}$ is wrong; the area is $\\boxed{\\frac{1}{1}}$.",
        },
        ("train", "geometry", "8"): {"problem": "No box.", "level": "Level 2", "type": "Geometry", "solution": "1"},
        ("test", "algebra", "3"): {
            "problem": "p",
            "level": "Level 5",
            "type": "Algebra",
            "solution": "\\fbox{$x^{2}$}",
        },
    }
    for (split, subject, number), row in problems.items():
        (root / "MATH" / split / subject).mkdir(parents=True, exist_ok=True)
        (root / "MATH" / split / subject / f"{number}.json").write_text(json.dumps(row))


def test_math_solutions_become_reasoning_and_boxed_answer(tmp_path):
    _math_tree(tmp_path / "raw")
    counts = convert_dataset("math", tmp_path / "raw", tmp_path / "out")
    assert counts["instruct_train"] == 2 and counts["instruct_test"] == 1 and counts["invalid"] == 1
    assert "geometry/8.json: the solution has no \\boxed{...} answer" in counts["invalid_examples"][0]
    samples = list(iter_samples(tmp_path / "out" / "instruct_train.jsonl"))
    assert [s["id"] for s in samples] == ["math-train-algebra-1", "math-train-geometry-7"]
    assistant = samples[1]["messages"][1]
    assert assistant["content"][0]["text"] == "\\frac{1}{1}"  # the LAST box
    assert assistant["reasoning_content"].startswith("First guess") and samples[1]["metadata"]["level"] == "Level 2"
    assert _read(tmp_path / "out" / "instruct_test.jsonl")[0]["metadata"]["answer"] == "$x^{2}$"


@pytest.mark.skipif(not MATH500.exists(), reason=f"real MATH data not found at {MATH500} (set OPENMIND_SHARED_DATA)")
def test_math_boxed_answer_matches_the_gold_answer_on_real_problems(tmp_path):
    """Real MATH solutions (MATH-500, read-only) written as Hendrycks per-problem files: every extracted answer
    equals the dataset's own `answer` field."""
    rows = _read(MATH500)
    for number, row in enumerate(rows):
        folder = tmp_path / "MATH" / "train" / row["subject"].lower().replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        keep = {"problem": row["problem"], "level": f"Level {row['level']}", "type": row["subject"]}
        (folder / f"{number}.json").write_text(json.dumps({**keep, "solution": row["solution"]}))
    counts = convert_dataset("math", tmp_path, tmp_path / "out")
    assert counts["instruct_train"] == len(rows) == 500 and counts["invalid"] == 0
    by_problem = {r["problem"]: r["answer"] for r in rows}
    mismatches = [
        (r["conversations"][1]["value"], by_problem[r["conversations"][0]["value"]])
        for r in _read(tmp_path / "out" / "instruct_train.jsonl")
        if r["conversations"][1]["value"] != by_problem[r["conversations"][0]["value"]]
    ]
    print(f"MATH-500 boxed answer == gold answer: {500 - len(mismatches)}/500; first mismatches: {mismatches[:3]}")
    assert not mismatches, mismatches[:5]


def test_last_boxed_handles_nesting_and_cut_boxes():
    assert last_boxed("\\boxed{\\frac{a}{b}} and \\boxed{ {x} }") == " {x} "
    assert last_boxed("so \\boxed 5.") == "5."
    assert last_boxed("\\boxed{unbalanced") is None and last_boxed("none") is None


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


def _served(name: str, base: str) -> list[Remote]:
    """The dataset's registered remotes, at the local server: tests the file names the converter expects."""
    return [Remote(r.filename, url=f"{base}/{r.filename}") for r in DATASETS[name].remotes]


def test_download_path_from_a_local_server(local_server, tmp_path):
    root, base = local_server
    _webvid_csv(root)
    with zipfile.ZipFile(root / "raw_caption.zip", "w") as z:
        z.writestr("raw_caption.json", json.dumps(HOWTO_CAPTIONS))
    _vg_files(root)
    _math_tree(tmp_path / "math_src")
    with tarfile.open(root / "MATH.tar", "w") as tar:
        tar.add(tmp_path / "math_src" / "MATH", arcname="MATH")
    expected = {
        "webvid": ("pretrain_val", 2),
        "howto100m": ("pretrain_train", 3),
        "visual-genome": ("instruct_train", 1),
        "math": ("instruct_train", 2),
    }
    for name, (output, count) in expected.items():
        raw = fetch(name, _served(name, base), tmp_path / name / "raw")
        assert convert_dataset(name, raw, tmp_path / name)[output] == count, name
