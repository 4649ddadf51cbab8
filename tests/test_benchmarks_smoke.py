"""The benchmark's smoke version (CI): its correctness gate, its FLOP accounting, and the speed paths it measures.

No timing is asserted here: `make bench` measures; these tests make sure what it measures is correct.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO_ROOT / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))

from flops import UsefulFlops, count_flops  # noqa: E402
from gate import run_gate  # noqa: E402
from workload import SMOKE, prepare_workspace  # noqa: E402

from openmind_hf.modeling.modeling_openmind import labelled_positions_loss  # noqa: E402


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench-smoke")
    prepare_workspace(SMOKE, path, seed=0)
    return path


# ------------------------------------------------------------------------------------------------------- the gate


def test_gate_passes_for_converted_weights(workspace):
    report = run_gate(str(workspace), pack_length=64)
    assert report["passed"], report
    assert all(report["same_inputs"].values())
    assert report["logits_max_abs_diff"] <= 1e-4
    # The OpenMind side trains on a packed batch (several rows of <= 64 tokens) with the labelled-positions loss,
    # the baseline on TRL's padded batch with TRL's fused head: same loss.
    assert report["packed_rows"] > 1
    assert report["loss_rel_diff"] <= 1e-4


def test_run_all_refuses_to_compare_when_weights_differ(workspace, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(workspace, broken)
    from transformers import AutoModelForImageTextToText

    import openmind_hf  # noqa: F401

    model = AutoModelForImageTextToText.from_pretrained(broken / "openmind")
    with torch.no_grad():
        model.lm_head.weight.add_(0.05 * torch.randn_like(model.lm_head.weight))
    model.save_pretrained(broken / "openmind")

    output = tmp_path / "report.json"
    command = [sys.executable, str(BENCH_DIR / "run_all.py"), "--smoke", "--workdir", str(broken),
               "--reuse-workspace", "--output", str(output)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(output.read_text())
    assert report["gate"]["passed"] is False
    assert report["gate"]["logits_max_abs_diff"] > 1e-4
    assert "ratios" not in report and "nothing was timed" in report["error"]


def test_run_all_gate_only_cli(workspace, tmp_path):
    output = tmp_path / "gate.json"
    command = [sys.executable, str(BENCH_DIR / "run_all.py"), "--smoke", "--gate-only", "--workdir", str(workspace),
               "--reuse-workspace", "--output", str(output)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(output.read_text())
    assert report["gate"]["passed"] is True
    assert report["config"]["name"] == "smoke" and report["hardware"]["logical_cpus"] >= 1


# ---------------------------------------------------------------------------------------------- FLOP accounting


def _eager_tiny():
    """The tiny three-tower preset with eager attention, so PyTorch's counter sees every attention matmul."""
    from openmind_hf import build_tiny_preset

    model, processor = build_tiny_preset(seed=0)
    model.set_attn_implementation("eager")
    return model, processor


@pytest.mark.parametrize("towers_trained", [False, True])
def test_useful_flops_match_the_flop_counter(towers_trained):
    import numpy as np
    from PIL import Image

    model, processor = _eager_tiny()
    model.train()
    for tower in (model.model.vision_tower, model.model.audio_tower):
        tower.requires_grad_(towers_trained)
    messages = [
        {"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (40, 30), (200, 30, 30))},
                                     {"type": "audio", "audio": np.zeros(16000, dtype=np.float32)},
                                     {"type": "text", "text": "What color is it?"}]},
        {"role": "assistant", "content": "red"},
    ]  # fmt: skip
    batch = processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_tensors="pt", return_assistant_tokens_mask=True
    )
    labels = batch["input_ids"].masked_fill(batch.pop("assistant_masks") == 0, -100)
    model.loss_only_when_labelled = True

    executed = count_flops(lambda: model(**batch, labels=labels).loss.backward())
    model.zero_grad(set_to_none=True)
    counter = UsefulFlops(model)
    useful = counter.step([batch["input_ids"].shape[1]], int((labels[:, 1:] != -100).sum()), 1, 1)
    # One unpadded sample, head on labelled rows only, eager attention: the step executes exactly the useful work.
    assert useful.total == pytest.approx(executed, rel=1e-6)
    assert counter.vision_trained is towers_trained and counter.audio_trained is towers_trained
    assert useful.audio > 0 and useful.vision > 0 and useful.lm_head > 0
    if towers_trained:  # a trained tower is charged forward + backward (~3x), a frozen one its forward only
        model.model.vision_tower.requires_grad_(False)
        model.model.audio_tower.requires_grad_(False)
        frozen = UsefulFlops(model)
        assert 2.5 < counter.per_image["tower"] / frozen.per_image["tower"] < 3.5
        assert 2.5 < counter.per_clip["tower"] / frozen.per_clip["tower"] < 3.5


def test_useful_flops_ignore_padding_and_unlabelled_rows(workspace):
    from worker import load_side

    model, _ = load_side("openmind", str(workspace))
    counter = UsefulFlops(model)
    short = counter.step([10, 20], num_labelled=5, num_images=2)
    assert counter.step([10, 20], num_labelled=5, num_images=2).total == short.total  # deterministic
    assert counter.step([10, 20, 0], 5, 2).total == short.total  # an empty (padding) segment costs nothing
    assert counter.step([10, 20], 6, 2).lm_head == short.lm_head * 6 / 5  # the head is charged per labelled row


# ------------------------------------------------------------------------------------------------- speed paths


def test_fused_head_loss_matches_plain_path_with_bias_scaling_and_retained_graph():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=True)
    hidden = torch.randn(3, 7, 16, requires_grad=True)
    labels = torch.randint(0, 50, (3, 7))
    labels[0, :5] = -100

    def run(loss_fn):
        hidden.grad, head.weight.grad, head.bias.grad = None, None, None
        loss = 0.5 * loss_fn()
        loss.backward(retain_graph=True)
        loss.backward()  # a second backward through the same graph accumulates the same gradients again
        return loss.detach(), hidden.grad.clone(), head.weight.grad.clone(), head.bias.grad.clone()

    def plain():
        logits = head(hidden)[:, :-1].reshape(-1, 50)
        return torch.nn.functional.cross_entropy(logits, labels[:, 1:].reshape(-1), ignore_index=-100)

    fused = run(lambda: labelled_positions_loss(hidden, head, labels, chunk=4))
    for got, expected in zip(fused, run(plain)):
        torch.testing.assert_close(got, expected)
    with torch.no_grad():  # evaluation takes the plain chunked path, and agrees
        torch.testing.assert_close(labelled_positions_loss(hidden, head, labels, chunk=4), plain())


def test_language_model_compiles_without_graph_breaks(tiny_model_and_processor):
    """The LM body of a training step (packed: position_ids, no mask) traces as one graph."""
    model, _ = tiny_model_and_processor
    lm = copy.deepcopy(model.model.language_model)
    embeds = torch.randn(1, 12, lm.config.hidden_size)
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6]])
    explanation = torch._dynamo.explain(lm)(inputs_embeds=embeds, position_ids=position_ids, use_cache=False)
    assert explanation.graph_break_count == 0, explanation.break_reasons


def test_fast_decoding_gives_the_same_greedy_tokens(tiny_model_and_processor):
    """Static cache + compiled decode step (the benchmark's OpenMind decode path) = stock generate, token for token."""
    from PIL import Image

    from openmind_hf.modeling.generation_openmind import fast_decoding_kwargs

    model, processor = tiny_model_and_processor
    model = copy.deepcopy(model)  # generate() caches its compiled step on the model; keep the shared one clean
    kwargs = fast_decoding_kwargs("cpu")
    assert kwargs["cache_implementation"] == "static" and kwargs["compile_config"].fullgraph
    messages = [{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (32, 32), (0, 90, 200))},
                                             {"type": "text", "text": "Which shape is shown?"}]}]  # fmt: skip
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    greedy = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False}
    torch._dynamo.reset()
    stock = model.generate(**inputs, **greedy)
    # The eager backend keeps the test fast; fullgraph=True still fails on any graph break in the decode step.
    kwargs["compile_config"].backend = "eager"
    fast = model.generate(**inputs, **greedy, **kwargs)
    assert hasattr(model, "_compiled_call"), "generate() did not take the compiled decode path"
    assert torch.equal(stock, fast)


# -------------------------------------------------------------------------------------------------- gpu_mfu.py


def test_gpu_mfu_dry_run_on_cpu():
    """The GPU benchmark's code path (model, packed batches, step, FLOP accounting) at toy size on the CPU."""
    import gpu_mfu

    result = gpu_mfu.run(gpu_mfu.parse_args(["--preset", "tiny", "--device", "cpu", "--dtype", "fp32",
                                             "--attn", "sdpa", "--steps", "2", "--warmup", "1"]))  # fmt: skip
    assert result["tokens_per_s"] > 0 and result["useful_flops_per_step"] > 0
    assert result["flops_breakdown_last_step"]["vision"] > 0  # vision FLOPs are counted
    assert 0 <= result["padding_fraction"] < 0.5
    assert all(torch.isfinite(torch.tensor(result["losses"])))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_mfu_1b_runs_on_cuda():
    import gpu_mfu

    result = gpu_mfu.run(gpu_mfu.parse_args(["--steps", "3", "--warmup", "2"]))
    assert result["parameters"] > 0.9e9 and result["peak_memory_gib"] > 0
    assert result["mfu_vs_measured_matmul"] is not None and 0 < result["mfu_vs_measured_matmul"] < 1


# --------------------------------------------------------------------------------------- the committed report


def test_committed_report_carries_both_baselines_and_the_limit_shares():
    """`benchmarks/results/latest.json` (what RESULTS.md quotes): gate passed, stock and tuned baseline columns, the
    decode bandwidth shares, the MFU and the tiny-preset steps, each number with the machine's load; and its summary
    is what `summarise` computes from its raw runs (no hand-edited numbers)."""
    import run_all

    report = json.loads((BENCH_DIR / "results" / "latest.json").read_text())
    assert report["gate"]["passed"] and report["command"].startswith("python benchmarks/run_all.py")
    assert len(report["hardware"]["load_average_at_start"]) == 3
    summary = report["summary"]
    assert {"baseline", "openmind"} <= set(summary["sides"])
    if not report["settings"]["no_sft_tuned"]:  # TRL + torch_compile: skipped only where it cannot compile in time
        assert "baseline_tuned" in summary["sides"] and "sft_samples_per_s_tuned" in report["ratios"]
    decode = summary["decode"]
    assert {"baseline", "baseline_tuned", "openmind", "openmind_stock_generate"} <= set(decode)
    for label, variant in decode.items():
        assert 0 < variant["share_of_read_bandwidth"] and variant["bytes_per_token"] > 0, label
        assert variant["load_average"], label
    assert decode["baseline_tuned"]["compiled_step_s"] > 0 and decode["openmind"]["compiled_step_s"] > 0
    assert "decode_tokens_per_s_tuned" in report["ratios"] and 0 < report["ratios"]["openmind_mfu"] < 1
    assert report["matmul_peak"]["memory_bandwidth"]["copy_bytes_per_s"] > 0
    assert summary["trainer_steps"]["trainer_steps_per_s"] > 0
    assert all("load_average_start" in run for runs in report["raw"]["sft"].values() for run in runs)
    recomputed = run_all.summarise(report["raw"], report["matmul_peak"])
    assert recomputed["ratios"] == pytest.approx(report["ratios"])


def test_decode_bytes_count_every_weight_read_once_per_step(workspace):
    from worker import decode_bytes, load_side

    model, _ = load_side("openmind", str(workspace))
    one, eight = decode_bytes(model, 1, 10), decode_bytes(model, 8, 10)
    lm = model.model.language_model
    embed = lm.get_input_embeddings().weight
    assert one["lm_body_weights"] == 4 * (sum(p.numel() for p in lm.parameters()) - embed.numel())
    assert one["lm_head_weights"] == 4 * model.lm_head.weight.numel()
    # Weights are shared by the rows of a batch; the KV cache and embedding rows are per row.
    assert eight["per_step"] - one["per_step"] == 7 * (one["kv_cache"] + one["embedding_rows"])


def test_vectorised_assistant_masks_equal_the_mixin_loop(tiny_model_and_processor):
    """OpenMind's tensor version of `_adjust_assistant_masks_indices` gives the mixin's masks, with image placeholders
    expanded before the labelled spans, batched (tensors) and unbatched (lists)."""
    from PIL import Image
    from transformers import ProcessorMixin

    _, processor = tiny_model_and_processor
    image = Image.new("RGB", (32, 32), (0, 90, 200))
    chats = [
        [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Shape?"}]},
         {"role": "assistant", "content": "a blue square"},
         {"role": "user", "content": [{"type": "text", "text": "And again?"}]},
         {"role": "assistant", "content": "still a square"}],
        [{"role": "user", "content": [{"type": "text", "text": "hi"}]}, {"role": "assistant", "content": "hello"}],
    ]  # fmt: skip

    def masks(cls, **kwargs):
        original = type(processor)._adjust_assistant_masks_indices
        type(processor)._adjust_assistant_masks_indices = cls._adjust_assistant_masks_indices
        try:
            return processor.apply_chat_template(
                chats, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, **kwargs
            )["assistant_masks"]
        finally:
            type(processor)._adjust_assistant_masks_indices = original

    ours = type(processor)
    tensors = masks(ours, return_tensors="pt", processor_kwargs={"padding": True})
    assert tensors.dtype == torch.long and 0 < int(tensors.sum()) < tensors.numel()
    assert torch.equal(tensors, masks(ProcessorMixin, return_tensors="pt", processor_kwargs={"padding": True}))
    assert masks(ours, processor_kwargs={"padding": False}) == masks(
        ProcessorMixin, processor_kwargs={"padding": False}
    )
