"""Launch helpers for the 2-process scale-out tests: the recipes run as real `accelerate launch` / `python`
subprocesses (single-threaded, with a hard timeout so a hang fails the test instead of CI), with HF_HOME in a temp
dir and DeepSpeed's JIT-built CPU communication op cached next to the venv (built once, ~1-2 min on 2 cores)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "recipes" / "accelerate_configs"
SFT_YAML = REPO / "recipes" / "configs" / "tiny" / "sft.yaml"
# DeepSpeed builds `deepspeed_shm_comm` on first use on CPU; a per-venv cache keeps that to one build per machine.
TORCH_EXTENSIONS_DIR = Path(sys.prefix) / "torch_extensions"


def launcher() -> str:
    path = Path(sys.executable).with_name("accelerate")
    return str(path) if path.exists() else "accelerate"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(tmp_path: Path, **extra: str) -> dict:
    env = dict(os.environ)
    env.pop("ACCELERATE_USE_CPU", None)  # set per launch: DDP on CPU needs it, DeepSpeed must not see it
    env.update(
        OMP_NUM_THREADS="1",
        HF_HOME=str(tmp_path / "hf_home"),
        TORCH_EXTENSIONS_DIR=str(TORCH_EXTENSIONS_DIR),
        DS_ACCELERATOR="cpu",
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO / "tests"), env.get("PYTHONPATH", "")]),
        **extra,
    )
    return env


def run(command: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    """Runs `command`; a timeout kills the whole process group (launcher and ranks) and fails with its output."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        raise AssertionError(
            f"timed out after {timeout:.0f} s (a hang?): {' '.join(command)}\n{out[-4000:]}"
        ) from None
    return subprocess.CompletedProcess(command, proc.returncode, out, "")


def accelerate_launch(config: Path | str, script: Path | str, args: list[str], env: dict, timeout: float = 300,
                      extra_launch: tuple[str, ...] = ()) -> subprocess.CompletedProcess:  # fmt: skip
    command = [launcher(), "launch", "--config_file", str(config), "--main_process_port", str(free_port()),
               *extra_launch, str(script), *args]  # fmt: skip
    return run(command, env, timeout)


def sft_args(dataset: Path, output_dir: Path, batch_size: int, steps: int = 3, *extra: str) -> list[str]:
    return ["--config", str(SFT_YAML), "--dataset_name", str(dataset), "--output_dir", str(output_dir),
            "--per_device_train_batch_size", str(batch_size), "--max_steps", str(steps), "--save_strategy", "no",
            "--disable_tqdm", "true", "--seed", "0", *extra]  # fmt: skip


def losses(output_dir: Path) -> list[float]:
    lines = (output_dir / "loss_history.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if line.strip()]


def max_relative_difference(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b), (a, b)
    return max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b))
