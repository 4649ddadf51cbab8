"""Sharded checkpoints survive SIGKILL: a 2-process ZeRO-3 SFT run killed after step 3 (checkpoints 1 and 2 on disk,
each with DeepSpeed's per-rank partitions) and resumed with `--resume_from_checkpoint latest` logs the same per-step
losses as a run that was never interrupted, and its final model is one ordinary consolidated safetensors file that
`from_pretrained` loads in a single process, equal to the uninterrupted run's."""

from __future__ import annotations

import textwrap

import pytest
import torch
from scaleout import CONFIGS, SFT_YAML, accelerate_launch, child_env, losses, max_relative_difference
from training_data import write_training_data

pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install -e '.[train]')")

# Every rank SIGKILLs itself at the end of optimizer step KILL_AT_STEP (before that step's checkpoint is written).
DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    from transformers import TrainerCallback
    from training_data import run_recipe

    kill_at = int(os.environ.get("KILL_AT_STEP", "0"))

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if kill_at and state.global_step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    run_recipe("sft", sys.argv[1:], callbacks=[Kill()])
    """
)


def test_zero3_kill_and_resume_matches_uninterrupted(tmp_path):
    from safetensors.torch import load_file

    from openmind_hf import OpenMindForConditionalGeneration

    data = write_training_data(tmp_path / "data", num_train=16, num_test=2)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)

    def launch(out, *extra, **env):
        args = ["--config", str(SFT_YAML), "--dataset_name", str(data / "instruct_train.jsonl"),
                "--output_dir", str(out), "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "1",
                "--per_device_train_batch_size", "2", "--learning_rate", "1e-4", "--disable_tqdm", "true",
                "--seed", "0", "--ddp_backend", "gloo", *extra]  # fmt: skip
        return accelerate_launch(CONFIGS / "zero3_cpu.yaml", driver, args, child_env(tmp_path, **env), timeout=300)

    uninterrupted = tmp_path / "uninterrupted"
    proc = launch(uninterrupted)
    assert proc.returncode == 0, proc.stdout[-4000:]

    resumed = tmp_path / "resumed"
    proc = launch(resumed, KILL_AT_STEP="3")
    assert proc.returncode != 0, "the run was not killed"
    assert (resumed / "checkpoint-2").is_dir() and not (resumed / "checkpoint-3").exists()
    assert len(losses(resumed)) == 2
    proc = launch(resumed, "--resume_from_checkpoint", "latest")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "checkpoint-2" in proc.stdout  # resumed from the newest complete checkpoint

    curve, reference = losses(resumed), losses(uninterrupted)
    difference = max_relative_difference(curve, reference)
    print(f"ZeRO-3 kill/resume: {curve} vs {reference}, max relative difference {difference:.2e}")
    assert len(curve) == 4 and difference <= 1e-6

    final = OpenMindForConditionalGeneration.from_pretrained(resumed).state_dict()
    expected = load_file(uninterrupted / "model.safetensors")
    worst = max((final[k] - expected[k]).abs().max().item() for k in expected if k in final)
    print(f"ZeRO-3 kill/resume: max |weight difference| {worst:.2e}")
    assert worst <= 1e-6
    assert all(isinstance(v, torch.Tensor) and v.numel() for v in final.values())
