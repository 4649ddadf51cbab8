"""Issue 14 item 2: bad data fails before training, in one line naming file:line:column and what to do; and
`openmind data check --stats` shows token lengths, media counts and samples as the model sees them."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from training_data import run_recipe, write_training_data

from openmind_hf.data.errors import DataError
from openmind_hf.data.policy import SkipReport
from openmind_hf.training.data import load_chat_store
from openmind_hf.training.recipe_loader import parse_stage_args

TINY = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "tiny"
QUICK = ["--max_steps", "2", "--disable_tqdm", "true", "--per_device_train_batch_size", "2", "--save_steps", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_training_data(tmp_path_factory.mktemp("check-data"), num_train=8, num_test=0)


def _with_line(data: Path, name: str, line_number: int, bad_line: str) -> Path:
    lines = (data / "instruct_train.jsonl").read_text().splitlines()[:6]
    lines.insert(line_number - 1, bad_line)
    path = data / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _missing_image_line(data: Path) -> str:
    record = json.loads((data / "instruct_image.jsonl").read_text().splitlines()[0])
    return json.dumps(record | {"id": "lost", "image": "images/not-there.png"})


def _load(path: Path, *flags: str):
    argv = ["--preset", "tiny", "--dataset_name", str(path), *flags]
    return load_chat_store(parse_stage_args("sft", argv)[1], SkipReport())


def test_a_missing_image_fails_at_load_in_one_line_with_file_line_column_and_what_to_do(data):
    bad = _missing_image_line(data)
    path = _with_line(data, "missing.jsonl", 5, bad)
    with pytest.raises(DataError) as caught:
        _load(path)
    message = str(caught.value)
    column = bad.index('"images/not-there.png"') + 1
    assert message.startswith(f"{path}:5:{column} (sample 'lost'): image file not found: ")
    assert "--on_error skip" in message and f"openmind data check {path}" in message and "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__

    store = _load(path, "--on_error", "skip")  # the same record under skip: counted once, at load
    assert len(store) == 6 and store.skip_report.ids == ["lost"]


def test_invalid_json_is_reported_at_its_real_column(data):
    bad = '{"id": "col90", "text": "' + "a" * 62 + '" "oops": 1}'  # the missing comma is at column 90
    assert bad.index('"oops"') + 1 == 90
    path = _with_line(data, "column90.jsonl", 3, bad)
    with pytest.raises(DataError, match=rf"^{path}:3:90 .*invalid JSON \(.* at column 90\).*--on_error skip"):
        _load(path)


def test_a_corrupt_image_header_fails_at_load_not_mid_training(data):
    (data / "images" / "garbage.png").write_bytes(b"this is not a picture" * 10)
    record = json.loads(_missing_image_line(data)) | {"id": "garbage", "image": "images/garbage.png"}
    path = _with_line(data, "garbage.jsonl", 2, json.dumps(record))
    with pytest.raises(DataError, match=rf"^{path}:2:\d+ \(sample 'garbage'\): cannot decode image .*garbage\.png"):
        _load(path)


def test_a_recipe_with_a_missing_image_stops_before_step_1(data, tmp_path, capsys):
    path = _with_line(data, "recipe-missing.jsonl", 4, _missing_image_line(data))
    out = tmp_path / "run"
    argv = ["--config", str(TINY / "sft.yaml"), "--dataset_name", str(path), "--output_dir", str(out), *QUICK]
    with pytest.raises(DataError, match=rf"^{path}:4:\d+ \(sample 'lost'\): image file not found"):
        run_recipe("sft", argv)
    assert not list(out.glob("checkpoint-*")) and not (out / "loss_history.jsonl").exists()

    from openmind_hf.cli import main  # `openmind train`: the same error in one line on stderr, exit 1

    assert main(["train", "--stage", "sft", *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"openmind train: {path}:4:") and "--on_error skip" in err[-1]
    assert not any("Traceback" in line for line in err)
    assert not list(out.glob("checkpoint-*"))

    # `python recipes/sft.py ...`, as the README runs it: the same one line, exit 1, no traceback.
    import subprocess
    import sys

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "sft.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(recipe), *argv], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and f"recipes/sft.py: {path}:4:" in done.stderr


def test_data_check_stats_shows_lengths_media_and_the_labelled_span(data, capsys):
    from openmind_hf.cli import main

    source = data / "instruct_mixed.jsonl"
    assert main(["data", "check", str(source), "--stats"]) == 2  # no processor to tokenize with
    assert "--model DIR or --preset tiny" in capsys.readouterr().err

    assert main(["data", "check", str(source), "--stats", "--preset", "tiny", "--max-length", "64"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    stats, n = summary["stats"], summary["usable"]
    assert n == len(source.read_text().splitlines()) and stats["tokenized"] == n
    assert stats["media"] == {"images": n, "audios": n, "videos": 0} | {
        "samples_with_image": n,
        "samples_with_audio": n,
        "samples_with_video": 0,
    }
    lengths = stats["token_lengths"]
    assert sum(b["count"] for b in lengths["histogram"]) == n and lengths["min"] <= lengths["p50"] <= lengths["max"]
    shown = [int(re.search(r"\((\d+) tokens\)", p)[1]) for p in stats["preview"]]
    assert len(shown) == n and lengths["over_max_length"] == sum(length > 64 for length in shown) > 0
    first = json.loads(source.read_text().splitlines()[0])
    answer = first["conversations"][1]["value"]
    preview = stats["preview"][0]
    assert preview.startswith(f"--- {first['id']} (") and "<image>x" in preview and "<audio>x" in preview
    labelled = preview[preview.index("[[") + 2 : preview.index("]]")]
    assert answer in labelled and "<image>" not in labelled  # the loss trains on the answer, not the prompt
    assert "token lengths" in captured.err and "the loss trains on the text between [[ and ]]" in captured.err


def test_preflight_catches_every_faulty_record_but_a_truncated_jpeg_at_load(tmp_path):
    """`write_faulty_dataset`: the header checks find the bad records before any item is read; only a truncated
    JPEG (whose header is intact) still waits for its decode, where `on_error` applies as before."""
    from openmind_hf.data.dataset import OpenMindDataset
    from openmind_hf.data.synthetic import write_faulty_dataset
    from openmind_hf.data.validate import RecordChecks

    info = write_faulty_dataset(tmp_path, num_good=12, seed=3)
    report = SkipReport()
    dataset = OpenMindDataset(info["path"], on_error="skip", report=report, checks=RecordChecks())
    assert set(info["bad_ids"]) - set(report.ids) == {"fault-truncated_jpeg"}
    assert report.count == info["num_bad"] - 1
    for i in range(len(dataset)):
        dataset[i]
    assert sorted(report.ids) == sorted(info["bad_ids"])


def test_data_check_reads_preference_pairs_as_the_dpo_preflight_error_tells_users_to(tmp_path, capsys):
    # The DPO/reward pre-flight error says "run `openmind data check FILE`": it must understand pairs.
    from openmind_hf.cli import main
    from openmind_hf.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(tmp_path, seed=0, num_train=6, num_test=0)
    lines = (tmp_path / "preference_train.jsonl").read_text().splitlines()
    assert main(["data", "check", str(tmp_path / "preference_train.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out)["kinds"] == {"preference": len(lines)}

    broken = json.loads(lines[2]) | {"id": "lost-pair", "images": ["images/not-there.png"]}
    bad = tmp_path / "pairs_with_a_missing_image.jsonl"
    bad.write_text("\n".join([*lines[:2], json.dumps(broken), *lines[3:]]) + "\n")
    assert main(["data", "check", str(bad)]) == 3  # a check lists every bad record (skip is its default)
    out = json.loads(capsys.readouterr().out)
    assert out["usable"] == len(lines) - 1 and out["skipped"]["count"] == 1
    assert main(["data", "check", str(bad), "--on-error", "raise"]) == 1
    err = capsys.readouterr().err
    assert "lost-pair" in err and "not-there.png" in err and "Traceback" not in err
