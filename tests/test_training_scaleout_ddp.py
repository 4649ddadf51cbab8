"""More 2-process CPU runs through `accelerate launch`:

- multi-node: two accelerate "machines" on 127.0.0.1 (`multi_node_cpu.yaml`, `--machine_rank 0|1`) give the SFT
  recipe the same per-step losses as two processes on one machine (`cpu_ddp.yaml`);
- DPO and GRPO with image + audio samples under 2-process DDP run to the end, with both ranks training.
"""

from __future__ import annotations

import json
import subprocess

from scaleout import (
    CONFIGS,
    REPO,
    accelerate_launch,
    child_env,
    free_port,
    launcher,
    losses,
    max_relative_difference,
    sft_args,
)
from training_data import write_training_data

TINY = REPO / "recipes" / "configs" / "tiny"


def test_two_machines_on_one_box_match_one_machine(tmp_path):
    data = write_training_data(tmp_path / "data", num_train=16, num_test=2)
    dataset = data / "instruct_train.jsonl"
    env = child_env(tmp_path, ACCELERATE_USE_CPU="1")  # cpu_ddp.yaml's `use_cpu` does not reach the ranks

    one_box = tmp_path / "one_box"
    proc = accelerate_launch(CONFIGS / "cpu_ddp.yaml", REPO / "recipes" / "sft.py", sft_args(dataset, one_box, 2),
                             env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:]

    two_machines = tmp_path / "two_machines"
    port = str(free_port())
    machines = [
        subprocess.Popen(
            [
                launcher(),
                "launch",
                "--config_file",
                str(CONFIGS / "multi_node_cpu.yaml"),
                "--machine_rank",
                str(rank),
                "--main_process_port",
                port,
                str(REPO / "recipes" / "sft.py"),
                *sft_args(dataset, two_machines, 2),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    outputs = []
    try:
        for machine in machines:
            outputs.append(machine.communicate(timeout=300)[0])
    finally:
        for machine in machines:
            if machine.poll() is None:
                machine.kill()
    assert [m.returncode for m in machines] == [0, 0], "\n".join(o[-3000:] for o in outputs)

    multi, single = losses(two_machines), losses(one_box)
    difference = max_relative_difference(multi, single)
    print(f"two machines {multi} vs one machine {single}: max relative difference {difference:.2e}")
    assert len(multi) == 3 and difference <= 1e-6


def _ddp_run(stage, dataset, tmp_path, *extra):
    out = tmp_path / stage
    args = ["--config", str(TINY / f"{stage}.yaml"), "--dataset_name", str(dataset), "--output_dir", str(out),
            "--max_steps", "2", "--per_device_train_batch_size", "2", "--disable_tqdm", "true", *extra]  # fmt: skip
    env = child_env(tmp_path, ACCELERATE_USE_CPU="1")
    proc = accelerate_launch(CONFIGS / "cpu_ddp.yaml", REPO / "recipes" / f"{stage}.py", args, env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:]
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["global_step"] == 2
    return out


def test_dpo_with_media_under_ddp(tmp_path):
    data = write_training_data(tmp_path / "data", num_train=16, num_test=2)
    # the mixed file: every pair carries an image and an audio clip
    out = _ddp_run("dpo", data / "preference_mixed.jsonl", tmp_path)
    assert len(losses(out)) == 2


def test_grpo_with_media_under_ddp(tmp_path):
    data = write_training_data(tmp_path / "data", num_train=16, num_test=2)
    out = _ddp_run("grpo", data / "instruct_train.jsonl", tmp_path, "--max_completion_length", "6",
                   "--num_generations", "2")  # fmt: skip
    assert len(losses(out)) == 2


def test_a_bad_resume_path_stops_every_rank_with_the_main_process_verdict(tmp_path):
    """The checkpoint is verified (every file hashed) on the main process only; its error reaches every rank, so both
    exit with it instead of one waiting forever in the broadcast."""
    data = write_training_data(tmp_path / "data", num_train=8, num_test=2)
    env = child_env(tmp_path, ACCELERATE_USE_CPU="1")
    missing = tmp_path / "run" / "checkpoint-7"
    args = sft_args(data / "instruct_train.jsonl", tmp_path / "run", 2, 2, "--resume_from_checkpoint", str(missing))
    proc = accelerate_launch(CONFIGS / "cpu_ddp.yaml", REPO / "recipes" / "sft.py", args, env, timeout=300)
    assert proc.returncode != 0
    assert proc.stdout.count(f"Cannot resume from {missing}") == 2, proc.stdout[-4000:]  # one line per rank
