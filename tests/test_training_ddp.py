"""SFT on 2 CPU processes (gloo DDP) through `accelerate launch --multi_gpu --num_processes 2` with
`ACCELERATE_USE_CPU=1` (`--cpu --num_processes 2` would silently start ONE process): the ranks see different
samples and end with identical weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training_data import write_training_data

REPO = Path(__file__).resolve().parents[1]

# Runs the SFT recipe; every rank records the sample ids its collator saw and saves its own final weights.
DRIVER = textwrap.dedent(
    """
    import importlib.util, json, os, sys
    import torch.distributed as dist
    from safetensors.torch import save_file
    from transformers import TrainerCallback
    from openmind_hf.training import data

    rank = int(os.environ["RANK"])
    out = sys.argv[1]
    seen = []
    call = data.IndexedCollator.__call__
    def spy(self, rows):
        batch_samples = [self.stores[row.get("store", "train")][int(row["index"])] for row in rows]
        seen.extend(s["id"] for s in batch_samples)
        return call(self, rows)
    data.IndexedCollator.__call__ = spy

    spec = importlib.util.spec_from_file_location("sft_recipe", sys.argv[2])
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    models = []

    class KeepModel(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            models.append(getattr(model, "module", model))  # DDP wraps it on every rank

    recipe.main(*recipe.make_parser().parse_args_and_config(sys.argv[3:]), callbacks=[KeepModel()])

    model = models[0]
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"},
              os.path.join(out, f"weights-rank{rank}.safetensors"))
    with open(os.path.join(out, f"seen-rank{rank}.json"), "w") as f:
        json.dump({"seen": seen, "world_size": dist.get_world_size() if dist.is_initialized() else 1}, f)
    """
)


@pytest.mark.skipif(shutil.which("accelerate") is None and not Path(sys.executable).with_name("accelerate").exists(),
                    reason="the `accelerate` launcher is not installed")  # fmt: skip
def test_two_process_cpu_ddp_sft(tmp_path):
    data = write_training_data(tmp_path / "data", num_train=16)
    driver = tmp_path / "ddp_driver.py"
    driver.write_text(DRIVER)
    output_dir = tmp_path / "run"
    output_dir.mkdir()
    launcher = Path(sys.executable).with_name("accelerate")
    launcher = str(launcher) if launcher.exists() else "accelerate"
    env = dict(os.environ)
    env.update(
        ACCELERATE_USE_CPU="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]),
    )
    command = [
        launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", "29517",
        str(driver), str(output_dir), str(REPO / "recipes" / "sft.py"),
        "--config", str(REPO / "recipes" / "configs" / "tiny" / "sft.yaml"),
        "--dataset_name", str(data / "instruct_train.jsonl"), "--output_dir", str(output_dir),
        "--per_device_train_batch_size", "2", "--max_steps", "3", "--save_strategy", "no", "--disable_tqdm", "true",
    ]  # fmt: skip
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]

    ranks = [json.loads((output_dir / f"seen-rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2], "accelerate did not start two ranks"
    seen0, seen1 = (set(r["seen"]) for r in ranks)
    # 3 steps x 2 samples per rank (accelerate's loader may collate one batch ahead)
    assert len(seen0) >= 6 and len(seen1) >= 6, (seen0, seen1)
    assert not seen0 & seen1, f"the ranks trained on the same samples: {seen0 & seen1}"

    w0, w1 = (load_file(output_dir / f"weights-rank{r}.safetensors") for r in (0, 1))
    assert w0.keys() == w1.keys()
    for key in w0:
        assert torch.equal(w0[key], w1[key]), f"{key} differs between ranks after DDP training"
    # and they trained: the saved model is not the initial one
    from openmind_hf import build_tiny_preset

    initial = build_tiny_preset(seed=0)[0].state_dict()
    assert any(not torch.equal(initial[k], w0[k]) for k in w0)
    summary = json.loads((output_dir / "run_summary.json").read_text())
    assert summary["global_step"] == 3
