"""Mixed modalities never hang a 2-process run: rank 0 trains on image-only samples, rank 1 on audio-only samples
and, at step 2, a text-only batch, so at every step one rank leaves a tower idle. `OpenMindModel._idle_towers_pass`
runs idle towers on a zero input with weight 0, so both ranks run the same collectives (ZeRO-3 gathers the towers'
parameters in forward; DDP / ZeRO reduce every gradient). Without it ZeRO-2 already dies here with gloo's
"Received data size doesn't match expected size ... collective mismatch" and ZeRO-3 waits forever. Each run is
killed after its timeout, so a hang fails the test instead of CI. (FSDP2 cannot run through accelerate on CPU; its
model-level run is `test_training_scaleout_fsdp2.py`.)"""

from __future__ import annotations

import json
import textwrap
import time

import pytest
from scaleout import CONFIGS, accelerate_launch, child_env, sft_args
from training_data import write_training_data

# Each rank trains on its own file (`rank{RANK}.jsonl`); sequential sampling fixes which samples form which batch.
DRIVER = textwrap.dedent(
    """
    import os, sys
    from training_data import run_recipe

    argv = [a.replace("RANK_FILE", f"rank{os.environ['RANK']}.jsonl") for a in sys.argv[1:]]
    run_recipe("sft", argv)
    """
)
TEXT_ONLY = {"conversations": [{"from": "user", "value": "Say hello."}, {"from": "assistant", "value": "Hello."}]}


def write_rank_files(root):
    """rank0.jsonl: 12 image samples. rank1.jsonl: audio samples with a text-only pair at positions 6-7, which is
    rank 1's second batch (accelerate gives rank r the batches r, r+2, ... of its sequential loader)."""
    data = write_training_data(root, num_train=32, num_test=2)
    image = (data / "instruct_image.jsonl").read_text().splitlines()[:12]
    audio = [json.loads(line) for line in (data / "instruct_audio.jsonl").read_text().splitlines()][:10]
    text = [{"id": f"text-{i}", **TEXT_ONLY} for i in range(2)]
    rank1 = audio[:6] + text + audio[6:10]
    (data / "rank0.jsonl").write_text("\n".join(image) + "\n")
    (data / "rank1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rank1))
    assert len(rank1) == 12
    return data


ENGINES = {  # config, recipe flags, environment (DDP on CPU needs ACCELERATE_USE_CPU=1; DeepSpeed must not have it)
    "ddp": ("cpu_ddp.yaml", [], {"ACCELERATE_USE_CPU": "1"}),
    "zero3": ("zero3_cpu.yaml", ["--ddp_backend", "gloo"], {}),
}


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_rank_specific_modalities_complete(engine, tmp_path):
    if engine.startswith("zero"):
        pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install -e '.[train]')")
    config, extra, env = ENGINES[engine]
    data = write_rank_files(tmp_path / "data")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    out = tmp_path / "run"
    args = sft_args(data / "RANK_FILE", out, 2, 3, "--train_sampling_strategy", "sequential", *extra)
    started = time.monotonic()
    proc = accelerate_launch(CONFIGS / config, driver, args, child_env(tmp_path, **env), timeout=300)
    elapsed = time.monotonic() - started
    print(f"{engine}: image-only rank 0 / audio+text-only rank 1, 3 steps in {elapsed:.1f} s")
    assert proc.returncode == 0, proc.stdout[-6000:]
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["global_step"] == 3
