"""DeepSpeed ZeRO-2 / ZeRO-3 on 2 CPU processes through `accelerate launch` and the SFT recipe
(`recipes/accelerate_configs/zero{2,3}_cpu.yaml`, `--ddp_backend gloo`): per-step losses and final weights equal one
process with the same global batch (2 x 2 vs 1 x 4), for full fine-tuning, frozen towers and LoRA. Equal losses need
the loss normalised by the GLOBAL count of labelled tokens (transformers' `average_tokens_across_devices` + the
model's `num_items_in_batch`); the logged loss is the mean over ranks (`LossHistoryCallback`).

Every record of the data carries an image AND an audio clip, so every rank's batch uses both towers (idle towers,
the case where one process and two differ in which parameters get a gradient, are `test_training_scaleout_hang.py`'s).
"""

from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import load_file
from scaleout import CONFIGS, REPO, accelerate_launch, child_env, losses, max_relative_difference, run, sft_args
from training_data import write_training_data

deepspeed = pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install -e '.[train]')")

SFT = REPO / "recipes" / "sft.py"
VARIANTS = {
    "full": [],
    "frozen_towers": ["--freeze_vision", "true", "--freeze_audio", "true"],
    "lora": ["--use_lora", "true", "--lora_dropout", "0"],  # dropout masks cannot match across process layouts
}
# (engine config, variant): ZeRO-3 shards parameters too, so it gets the frozen-tower run (frozen tensors are still
# partitioned and gathered); LoRA runs under ZeRO-2.
CASES = [("zero2_cpu.yaml", "full"), ("zero3_cpu.yaml", "full"), ("zero3_cpu.yaml", "frozen_towers"),
         ("zero2_cpu.yaml", "lora")]  # fmt: skip
TOLERANCE = 1e-5
# Adam's first steps move each weight by ~lr * sign(grad): a 1e-8 float difference in a near-zero gradient (sharded
# reductions add in another order) can move a weight by up to lr. At the tiny config's 1e-3 that reached 1.6e-5 after
# 3 steps; at 1e-4 the same runs stay well inside TOLERANCE.
LEARNING_RATE = ["--learning_rate", "1e-4"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = write_training_data(tmp_path_factory.mktemp("scaleout_data"), num_train=48, num_test=2)
    mixed = root / "instruct_mixed.jsonl"
    assert len(mixed.read_text().splitlines()) >= 12, "need 3 steps x 4 samples of image+audio records"
    return mixed


@pytest.fixture(scope="module")
def one_process(data, tmp_path_factory):
    """The single-process reference run of each variant (batch 4), made once."""
    runs = {}

    def get(variant):
        if variant not in runs:
            tmp = tmp_path_factory.mktemp(f"one_{variant}")
            out = tmp / "run"
            proc = run(
                [sys.executable, str(SFT), *sft_args(data, out, 4, 3, *VARIANTS[variant], *LEARNING_RATE)],
                child_env(tmp),
                300,
            )
            assert proc.returncode == 0, proc.stdout[-4000:]
            runs[variant] = out
        return runs[variant]

    return get


def final_weights(output_dir, variant):
    name = "adapter_model.safetensors" if variant == "lora" else "model.safetensors"
    return load_file(output_dir / name)


@pytest.mark.parametrize("config,variant", CASES, ids=[f"{c.split('_')[0]}-{v}" for c, v in CASES])
def test_zero_matches_one_process(config, variant, data, one_process, tmp_path):
    reference = one_process(variant)
    out = tmp_path / "run"
    args = sft_args(data, out, 2, 3, *VARIANTS[variant], *LEARNING_RATE, "--ddp_backend", "gloo")
    proc = accelerate_launch(CONFIGS / config, SFT, args, child_env(tmp_path), timeout=400)
    assert proc.returncode == 0, proc.stdout[-6000:]

    sharded, single = losses(out), losses(reference)
    assert len(sharded) == 3
    difference = max_relative_difference(sharded, single)
    print(f"{config} {variant}: losses {sharded} vs {single}, max relative difference {difference:.2e}")
    assert difference <= TOLERANCE, (sharded, single)

    # the final model is one ordinary consolidated file (ZeRO-3 gathers its shards on save)
    w_sharded, w_single = final_weights(out, variant), final_weights(reference, variant)
    if "lm_head.weight" in w_sharded and "lm_head.weight" not in w_single:  # DeepSpeed also writes the tied head
        assert torch.equal(w_sharded.pop("lm_head.weight"), w_sharded["model.language_model.embed_tokens.weight"])
    assert w_sharded.keys() == w_single.keys()
    worst = max((w_sharded[k] - w_single[k]).abs().max().item() for k in w_single)
    print(f"{config} {variant}: max |weight difference| {worst:.2e}")
    assert worst <= TOLERANCE
    if config.startswith("zero3") and variant == "full":  # the gathered checkpoint loads in one process
        from openmind_hf import OpenMindForConditionalGeneration

        loaded = OpenMindForConditionalGeneration.from_pretrained(out).state_dict()
        assert all(torch.equal(loaded[k], w_single[k].to(loaded[k].dtype)) or
                   (loaded[k] - w_single[k]).abs().max() <= TOLERANCE for k in w_single)  # fmt: skip
    if variant == "full":  # and it trained: the weights moved away from the initial model's
        from openmind_hf import build_tiny_preset

        initial = build_tiny_preset(seed=0)[0].state_dict()
        assert any(not torch.equal(initial[k], w_sharded[k]) for k in w_sharded if k in initial)
