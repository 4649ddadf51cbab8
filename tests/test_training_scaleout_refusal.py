"""Multi-process launches that would silently not be distributed are refused by every recipe (`start_run` ->
`training.distributed.check_distributed_launch`), with the cause and the fix:

- `accelerate launch` with an FSDP config and `use_cpu: true` starts 2 processes that are each rank 0 of 1
  (`DistributedType.NO`): each would train its own copy;
- a DeepSpeed config on CPU without `--ddp_backend gloo`: accelerate counts one process, both ranks read the same data.
"""

from __future__ import annotations

import pytest
from scaleout import CONFIGS, REPO, accelerate_launch, child_env, sft_args
from training_data import write_training_data

from openmind_hf.training.distributed import launch_mismatch

FSDP_ON_CPU = """\
compute_environment: LOCAL_MACHINE
distributed_type: FSDP
num_machines: 1
num_processes: 2
machine_rank: 0
mixed_precision: "no"
use_cpu: true
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_transformer_layer_cls_to_wrap: Qwen2DecoderLayer
  fsdp_state_dict_type: FULL_STATE_DICT
"""


def test_fsdp_with_use_cpu_is_refused(tmp_path):
    """One recipe end to end; every recipe makes the same `start_run` call (see `test_every_recipe_checks`)."""
    data = write_training_data(tmp_path / "data", num_train=4, num_test=2)
    config = tmp_path / "fsdp2_cpu.yaml"
    config.write_text(FSDP_ON_CPU)
    out = tmp_path / "run"
    args = sft_args(data / "instruct_train.jsonl", out, 2, 1)
    proc = accelerate_launch(config, REPO / "recipes" / "sft.py", args, child_env(tmp_path), timeout=240)
    assert proc.returncode != 0, "the silently non-distributed launch trained"
    assert "Refusing to train: 2 processes were launched (WORLD_SIZE=2) but this one is not distributed" in proc.stdout
    assert "accelerate runs FSDP only on GPUs" in proc.stdout
    assert "cpu_ddp.yaml" in proc.stdout  # the fix names the configs that do run on CPU
    assert not (out / "loss_history.jsonl").exists(), "a step ran before the refusal"


def test_deepspeed_without_gloo_backend_is_refused(tmp_path):
    pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install -e '.[train]')")
    data = write_training_data(tmp_path / "data", num_train=4, num_test=2)
    out = tmp_path / "run"
    args = sft_args(data / "instruct_train.jsonl", out, 2, 1)
    proc = accelerate_launch(CONFIGS / "zero2_cpu.yaml", REPO / "recipes" / "sft.py", args, child_env(tmp_path), 300)
    assert proc.returncode != 0
    assert "accelerate sees world size 1" in proc.stdout and "--ddp_backend gloo" in proc.stdout


def test_launch_mismatch_rules(monkeypatch):
    """The rules without launching: single process, DDP and GPU FSDP pass; the CPU fallbacks do not."""
    for name in ("WORLD_SIZE", "ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(name, raising=False)
    assert launch_mismatch(1, "NO") is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launch_mismatch(2, "MULTI_CPU") is None
    assert "not distributed" in launch_mismatch(1, "NO")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert launch_mismatch(2, "MULTI_GPU") is None  # accelerate turns a GPU state into FSDP
    assert "does not shard" in launch_mismatch(2, "MULTI_CPU")


def test_every_recipe_checks():
    """Each recipe's `build_trainer` starts with `start_run`, which runs the check before any model is built."""
    import inspect

    from openmind_hf.training import run as run_module
    from openmind_hf.training.recipe_loader import load_recipe

    assert "check_distributed_launch(training_args)" in inspect.getsource(run_module.start_run)
    for stage in ("pretrain", "sft", "dpo", "reward", "grpo"):
        source = inspect.getsource(load_recipe(stage))
        assert "start_run(training_args)" in source or "sft.py" in source, f"recipes/{stage}.py skips start_run"
