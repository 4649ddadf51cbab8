"""Checkpoints that survive SIGKILL: a run killed (between steps, or in the middle of writing a checkpoint) and
resumed gives the same per-step losses (|diff| <= 1e-6, fp32 CPU) and the same final weights as a run that was never
interrupted; partial checkpoints are never loaded. Full fine-tuning and LoRA, gradient accumulation 2, saving by
steps and by epoch. Only the killed runs are subprocesses (a SIGKILL needs one)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training_data import write_training_data

from openmind_hf.training.checkpointing import (
    MARKER_NAME,
    is_complete_checkpoint,
    latest_complete_checkpoint,
    resolve_resume,
)

REPO = Path(__file__).resolve().parents[1]
SFT_YAML = REPO / "recipes" / "configs" / "tiny" / "sft.yaml"

# Runs the SFT recipe and SIGKILLs itself at the point named by OPENMIND_TEST_KILL ("step:N" after optimizer step N,
# or "optimizer:N" / "marker:N" / "publish:N" inside the save of checkpoint N: after the weights, before the
# completion marker, after the marker but before the rename).
DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    import importlib.util
    from transformers import TrainerCallback
    from openmind_hf.training import checkpointing, trl_internals

    where, step = os.environ["OPENMIND_TEST_KILL"].split(":")
    step = int(step)

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    seen = {}

    class KillAfterStep(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            seen["state"] = state

        def on_step_end(self, args, state, control, **kwargs):
            if where == "step" and state.global_step == step:
                die()

    def killing(function, current_step):
        def wrapped(*args, **kwargs):
            if current_step() == step:
                die()
            return function(*args, **kwargs)
        return wrapped

    current = lambda: seen["state"].global_step
    if where == "optimizer":
        hooks = trl_internals.CheckpointHooks
        hooks._save_optimizer_and_scheduler = killing(hooks._save_optimizer_and_scheduler, current)
    if where == "marker":
        checkpointing.write_marker = killing(checkpointing.write_marker, current)
    if where == "publish":
        checkpointing.publish = killing(checkpointing.publish, current)

    spec = importlib.util.spec_from_file_location("sft_recipe", sys.argv[1])
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    recipe.main(*recipe.make_parser().parse_args_and_config(sys.argv[2:]), callbacks=[KillAfterStep()])
    """
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_training_data(tmp_path_factory.mktemp("resume-data"), num_train=24)


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("driver") / "kill_driver.py"
    path.write_text(DRIVER)
    return path


def _argv(data: Path, output_dir: Path, extra: list[str]) -> list[str]:
    return [
        "--config", str(SFT_YAML), "--dataset_name", str(data / "instruct_train.jsonl"), "--output_dir", str(output_dir),
        "--max_train_samples", "16", "--per_device_train_batch_size", "4", "--lr_scheduler_type", "linear",
        "--learning_rate", "3e-3", "--disable_tqdm", "true", "--save_total_limit", "5", "--seed", "0",
    ] + extra  # fmt: skip


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"  # the same kernels as the in-process run below
    return env


def _run_killed(driver: Path, argv: list[str], kill: str) -> None:
    env = {**_env(), "OPENMIND_TEST_KILL": kill}
    proc = subprocess.run([sys.executable, str(driver), str(REPO / "recipes" / "sft.py"), *argv], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed ({proc.returncode}):\n{proc.stderr[-3000:]}"


def _run_resume(argv: list[str]) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "recipes" / "sft.py"), *argv, "--resume_from_checkpoint", "latest"],
                          env=_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


def _run_straight(argv: list[str]) -> None:
    """In-process, single-threaded like the subprocesses (so the kernels, hence the bits, are the same)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sft_recipe", REPO / "recipes" / "sft.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        recipe.main(*recipe.make_parser().parse_args_and_config(argv))
    finally:
        torch.set_num_threads(threads)


def _losses(output_dir: Path) -> dict[int, float]:
    lines = (output_dir / "loss_history.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines)}


def _weights(output_dir: Path) -> dict[str, torch.Tensor]:
    name = "adapter_model.safetensors" if (output_dir / "adapter_model.safetensors").exists() else "model.safetensors"
    return load_file(output_dir / name)


def _assert_same_run(straight: Path, resumed: Path, steps: int) -> None:
    a, b = _losses(straight), _losses(resumed)
    assert sorted(a) == sorted(b) == list(range(1, steps + 1))
    worst = max(abs(a[s] - b[s]) for s in a)
    assert worst <= 1e-6, f"per-step losses differ by up to {worst}: {a} vs {b}"
    wa, wb = _weights(straight), _weights(resumed)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), f"final weight {key} differs after resume"


SCENARIOS = {
    # name: (extra args, [(kill point, checkpoint the resume must start from)], total optimizer steps)
    "full-ft-steps-accum2": (
        [
            "--save_strategy",
            "steps",
            "--save_steps",
            "2",
            "--max_steps",
            "4",
            "--gradient_accumulation_steps",
            "2",
            "--max_train_samples",
            "24",
        ],  # fmt: skip
        [("step:3", "checkpoint-2"), ("publish:4", "checkpoint-2")],
        4,
    ),
    "lora-steps": (
        [
            "--save_strategy",
            "steps",
            "--save_steps",
            "2",
            "--max_steps",
            "4",
            "--use_lora",
            "true",
            "--lora_dropout",
            "0.1",
            "--freeze_vision",
            "true",
            "--freeze_audio",
            "true",
        ],  # fmt: skip
        [("optimizer:4", "checkpoint-2")],
        4,
    ),
    "full-ft-epochs": (
        ["--save_strategy", "epoch", "--num_train_epochs", "2", "--max_train_samples", "8"],
        [("marker:4", "checkpoint-2")],
        4,
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_sigkill_and_resume_reproduce_the_uninterrupted_run(scenario, data, driver, tmp_path):
    extra, kills, steps = SCENARIOS[scenario]
    straight = tmp_path / "straight"
    _run_straight(_argv(data, straight, extra))
    for kill, resume_from in kills:
        resumed = tmp_path / f"killed-{kill.replace(':', '-')}"
        argv = _argv(data, resumed, extra)
        _run_killed(driver, argv, kill)
        # Whatever the kill left behind, the newest COMPLETE checkpoint is the one before it.
        assert latest_complete_checkpoint(resumed) == str(resumed / resume_from)
        for leftover in [p for p in resumed.glob("checkpoint-*") if p.name != resume_from]:
            assert not is_complete_checkpoint(leftover)
        _run_resume(argv)
        summary = json.loads((resumed / "run_summary.json").read_text())
        assert summary["resumed_from"] == str(resumed / resume_from)
        assert not (resumed / ".staging").exists(), "the partial save was not cleaned up"
        _assert_same_run(straight, resumed, steps)


def test_checkpoints_hold_no_pickle_and_partial_ones_are_never_loaded(data, tmp_path):
    output_dir = tmp_path / "run"
    _run_straight(_argv(data, output_dir, ["--save_strategy", "steps", "--save_steps", "1", "--max_steps", "2"]))
    checkpoint = output_dir / "checkpoint-2"
    names = {p.name for p in checkpoint.iterdir()}
    assert {"model.safetensors", "optimizer.safetensors", "rng_state.safetensors", MARKER_NAME} <= names
    assert not [n for n in names if n.endswith((".pt", ".pth", ".bin", ".pkl"))], names

    # A newer checkpoint folder without a valid marker (a save cut short) is never chosen...
    partial = output_dir / "checkpoint-7"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"truncated")
    assert latest_complete_checkpoint(output_dir) == str(checkpoint)
    # ...nor loadable by name, and a file that changed after the marker was written breaks completeness.
    with pytest.raises(ValueError, match="openmind_checkpoint.json is missing or unreadable"):
        resolve_resume(str(partial), output_dir)
    with open(checkpoint / "optimizer.safetensors", "ab") as f:
        f.write(b"\0")
    assert not is_complete_checkpoint(checkpoint)
    assert latest_complete_checkpoint(output_dir) == str(output_dir / "checkpoint-1")
    assert resolve_resume("latest", tmp_path / "empty") is None
