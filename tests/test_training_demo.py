"""`make demo`, shortened: the same script end to end (data -> stage 1 -> stage 2 -> GRPO -> evaluation ->
loss curve -> pipeline -> summary.json) with a few steps per stage. The full run and its accuracy targets are
`make demo` itself (numbers in the training issue's closing note)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from openmind_hf.training.demo import TASKS, DemoConfig, _answer, run_demo

REPO = Path(__file__).resolve().parents[1]


def test_answer_extraction_reads_after_the_thinking_block():
    assert _answer("<think>\nI count 3. So 3.\n</think>\n\n3") == "3"
    assert _answer("Red.") == "red"
    assert _answer("<think>\nnever closed") == ""


def test_demo_runs_end_to_end_quickly(tmp_path):
    cfg = DemoConfig(output=str(tmp_path / "demo"), num_train=48, num_test=24, pretrain_steps=4, sft_steps=4,
                     grpo_steps=2, batch_size=4)  # fmt: skip
    summary = run_demo(cfg)

    out = Path(cfg.output)
    saved = json.loads((out / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert set(saved["accuracy"]) == set(TASKS) == set(saved["chance"])
    assert all(0.0 <= v <= 1.0 for v in saved["accuracy"].values())
    assert saved["chance"]["image"] <= 0.25 and saved["wall_seconds"] > 0
    assert [a["task"] for a in saved["pipeline_answers"]] == ["image", "audio"]
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every stage runs exactly its configured steps: nothing depends on the clock or the machine's load
    assert {k: v["global_step"] for k, v in saved["stages"].items()} == {"pretrain": 4, "sft": 4, "grpo": 2}
    assert saved["cpu_seconds"] > 0 and len(saved["load_average"]["start"]) == 3
    assert saved["final_model"].endswith("stage3-grpo")


def test_demo_has_no_wall_clock_budget():
    # a deadline once cut stage 1 at step 648 on a busy machine (image 0.52 instead of >= 0.90)
    assert not any("time" in f.name or "budget" in f.name for f in dataclasses.fields(DemoConfig))
    assert "time budget" not in (REPO / "src" / "openmind_hf" / "training" / "demo.py").read_text()


def test_demo_script_help():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), "--help"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and "--pretrain-steps" in proc.stdout and "--output" in proc.stdout
