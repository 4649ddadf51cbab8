"""OpenMind training throughput and MFU on one GPU, at ~1B parameters.

    python benchmarks/gpu_mfu.py --output benchmarks/results/gpu_mfu.json        # H100 / H200: target MFU >= 40%
    python benchmarks/gpu_mfu.py --attn flex_attention --compile                   # other attention / compiled body
    python benchmarks/gpu_mfu.py --preset tiny --device cpu --dtype fp32 --steps 2 # dry run of the code path

The model is an OpenMind model built from config (random weights): SigLIP-B/16 at 224 px (196 image tokens, frozen
by default as in LLaVA-style SFT) + a Qwen2-style LM (hidden 2048, 16 layers, GQA 16/4, vocab 32k, untied), ~1.0B
parameters. Each step trains on rows of `--row-length` tokens packed padding-free with image + chat samples of
long-tailed answer lengths; the loss is OpenMind's labelled-positions loss (head on labelled rows only).

Reported: real tokens/s, samples/s, peak GPU memory, and MFU = useful FLOP/s (`flops.UsefulFlops`: vision tower
forward only when frozen, forward + backward when trained; LM body per real token and per sample's attention; head per
labelled token) divided by the GPU's dense bf16 peak (spec sheet) and by a bf16 matmul peak measured in the same run.
Attention: flash-attention 2 (varlen over the packed samples) when `flash_attn` imports, else SDPA; `--attn` chooses.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR.parent / "src")]

from flops import UsefulFlops  # noqa: E402

# Dense bf16 tensor-core peaks (FLOP/s, no sparsity) from the vendors' spec sheets, matched on the device name.
SPEC_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "H800": 989e12, "A100": 312e12, "A800": 312e12, "L40S": 362e12,
                  "L4": 121e12, "A10G": 125e12, "RTX 4090": 165e12, "B200": 2250e12}  # fmt: skip

PRESETS = {
    "1b": {
        "vision": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                       image_size=224, patch_size=16),
        "text": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16, num_attention_heads=16,
                     num_key_value_heads=4, vocab_size=32768),
        "row_length": 8192, "rows": 2, "answer_median": 256, "answer_max": 3072,
    },
    "tiny": {
        "vision": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                       image_size=32, patch_size=8),
        "text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=1, vocab_size=512),
        "row_length": 128, "rows": 2, "answer_median": 16, "answer_max": 48,
    },
}  # fmt: skip

IMAGE_TOKEN_ID, PAD_TOKEN_ID, EOS_TOKEN_ID = 3, 0, 2


def build_model(preset: dict, attn: str, device: str, train_vision: bool):
    from transformers import Qwen2Config, SiglipVisionConfig

    from openmind_hf.modeling.configuration_openmind import OpenMindConfig
    from openmind_hf.modeling.modeling_openmind import OpenMindForConditionalGeneration

    vision = SiglipVisionConfig(**preset["vision"], vision_use_head=False)
    text = Qwen2Config(**preset["text"], max_position_embeddings=32768, tie_word_embeddings=False,
                       pad_token_id=PAD_TOKEN_ID, eos_token_id=EOS_TOKEN_ID, bos_token_id=None)  # fmt: skip
    config = OpenMindConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=IMAGE_TOKEN_ID,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = OpenMindForConditionalGeneration(config)
    model.set_attn_implementation(attn)
    model.model.vision_tower.requires_grad_(train_vision)
    model.loss_only_when_labelled = True  # the loss runs the head on labelled rows only
    return model.to(device).train()


def packed_batch(preset: dict, num_image_tokens: int, rng: np.random.Generator, device: str) -> dict:
    """Rows of `row_length` tokens, padding-free: samples = image + prompt + answer (labelled), positions restart
    at 0 per sample, no attention mask (transformers derives per-sample attention from `position_ids`)."""
    rows, length, vocab = preset["rows"], preset["row_length"], preset["text"]["vocab_size"]
    input_ids = torch.full((rows, length), PAD_TOKEN_ID, dtype=torch.long)
    labels = torch.full((rows, length), -100, dtype=torch.long)
    position_ids = torch.zeros((rows, length), dtype=torch.long)
    lengths, images = [], 0
    for r in range(rows):
        start = 0
        while True:
            prompt = int(rng.integers(16, 64))
            answer = int(np.clip(rng.lognormal(np.log(preset["answer_median"]), 0.8), 8, preset["answer_max"]))
            n = num_image_tokens + prompt + answer
            if start + n > length:
                break
            ids = torch.from_numpy(rng.integers(10, vocab, size=n))
            ids[:num_image_tokens] = IMAGE_TOKEN_ID
            input_ids[r, start : start + n] = ids
            labels[r, start + n - answer : start + n] = ids[-answer:]
            position_ids[r, start : start + n] = torch.arange(n)
            lengths.append(n)
            images += 1
            start += n
        position_ids[r, start:] = torch.arange(length - start)  # the row's tail: its own segment, never attended
    side = preset["vision"]["image_size"]
    return {
        "input_ids": input_ids.to(device),
        "labels": labels.to(device),
        "position_ids": position_ids.to(device),
        "pixel_values": torch.randn(images, 3, side, side).to(device),
        "use_cache": False,
        "_lengths": lengths,
    }


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak_bf16(device: str, n: int = 8192, repeats: int = 10) -> float | None:
    if not device.startswith("cuda"):
        return None
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def spec_peak(device: str) -> tuple[str, float | None]:
    if not device.startswith("cuda"):
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((peak for key, peak in SPEC_PEAK_BF16.items() if key in name), None)


def default_attention() -> str:
    return "flash_attention_2" if importlib.util.find_spec("flash_attn") is not None else "sdpa"


def run(args) -> dict:
    preset = dict(PRESETS[args.preset])
    preset.update({k: v for k, v in (("row_length", args.row_length), ("rows", args.rows)) if v})
    attn = args.attn or default_attention()
    model = build_model(preset, attn, args.device, args.train_vision)
    if args.dtype == "bf16-pure":
        model.to(torch.bfloat16)
    if args.compile:
        model.model.language_model = torch.compile(model.model.language_model)
    n_params = sum(p.numel() for p in model.parameters())
    autocast = torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.dtype == "bf16")
    with autocast:  # flash-attention runs in bf16 only; the counts do not depend on the dtype
        counter = UsefulFlops(model)
    rng = np.random.default_rng(0)
    batches = [packed_batch(preset, model.config.num_image_tokens, rng, args.device) for _ in range(4)]
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=args.device.startswith("cuda")
    )

    def step(batch: dict) -> float:
        inputs = {k: v for k, v in batch.items() if not k.startswith("_")}
        if args.dtype == "bf16-pure":
            inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
        with autocast:
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    for i in range(args.warmup):
        step(batches[i % len(batches)])
    _sync(args.device)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times, useful, tokens, samples, losses = [], [], [], [], []
    for i in range(args.steps):
        batch = batches[i % len(batches)]
        _sync(args.device)
        start = time.perf_counter()
        losses.append(step(batch))
        _sync(args.device)
        times.append(time.perf_counter() - start)
        labelled = int((batch["labels"][:, 1:] != -100).sum())
        useful.append(counter.step(batch["_lengths"], labelled, batch["pixel_values"].shape[0]).total)
        tokens.append(sum(batch["_lengths"]))
        samples.append(len(batch["_lengths"]))
    total = sum(times)
    flops_per_s = sum(useful) / total
    device_name, spec = spec_peak(args.device)
    measured = matmul_peak_bf16(args.device)
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device_name,
        "torch": torch.__version__,
        "preset": args.preset,
        "parameters": n_params,
        "attention": attn,
        "dtype": args.dtype,
        "compiled_lm": args.compile,
        "vision_trained": args.train_vision,
        "rows_x_row_length": [preset["rows"], preset["row_length"]],
        "step_s_median": statistics.median(times),
        "tokens_per_s": sum(tokens) / total,
        "samples_per_s": sum(samples) / total,
        "padding_fraction": 1 - sum(tokens) / (len(times) * preset["rows"] * preset["row_length"]),
        "useful_flops_per_step": statistics.mean(useful),
        "useful_flops_per_s": flops_per_s,
        "flops_breakdown_last_step": counter.step(
            batch["_lengths"], labelled, batch["pixel_values"].shape[0]
        ).as_dict(),
        "spec_peak_bf16_flops": spec,
        "mfu_vs_spec": flops_per_s / spec if spec else None,
        "measured_matmul_peak_bf16_flops": measured,
        "mfu_vs_measured_matmul": flops_per_s / measured if measured else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if args.device.startswith("cuda") else None,
        "losses": [float(x) for x in losses],
    }
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="OpenMind ~1B training MFU on one GPU.")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="1b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=["bf16", "bf16-pure", "fp32"], default="bf16",
                        help="bf16: autocast over fp32 weights (Trainer's bf16=True); bf16-pure: bf16 weights")  # fmt: skip
    parser.add_argument("--attn", choices=["flash_attention_2", "sdpa", "flex_attention", "eager"], default=None)
    parser.add_argument("--compile", action="store_true", help="torch.compile the LM body")
    parser.add_argument("--train-vision", action="store_true", help="train the vision tower too (default: frozen)")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--row-length", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--output", default=None, help="write the result as JSON here")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_mfu.py: no CUDA device here (use --device cpu --preset tiny for a dry run)", file=sys.stderr)
        return 2
    result = run(args)
    mfu = result["mfu_vs_spec"]
    print(json.dumps(result, indent=2))
    print(
        f"\n{result['device']}: {result['parameters'] / 1e9:.2f}B params, {result['tokens_per_s']:.0f} tokens/s, "
        f"MFU {'n/a' if mfu is None else f'{100 * mfu:.1f}%'} (spec), "
        f"peak memory {result['peak_memory_gib'] or 0:.1f} GiB, attention {result['attention']}"
    )
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
