"""One measurement in a fresh process: `python benchmarks/worker.py TASK --side {baseline,openmind} --workdir DIR`.

`run_all.py` starts one of these per (task, side, repeat) so the two sides never share a heap, a thread pool or an
allocator cache, and prints the result as one JSON line starting with `RESULT `. Threads are pinned before torch is
imported (`--threads`), and the peak RSS is the process's own high-water mark (`VmHWM`).

Tasks:
- `sft`: TRL training steps. Baseline: transformers `LlavaForConditionalGeneration` + TRL's stock `SFTTrainer` (its own
  vision collator, assistant-only loss, its fused LM head). OpenMind: `OpenMindSFTTrainer` (a TRL `SFTTrainer`) with
  the padding-free packing collator and the labelled-positions loss.
- `generate`: time to first token and decode tokens/s with the KV cache, greedy, batch 1 (image + question).
- `collate`: processor + collator throughput, and padding waste with and without packing.
- `peak`: the fp32 matmul peak at the same thread count (the MFU denominator).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _pin_threads(threads: int) -> None:
    # Before torch is imported, so OpenMP sizes its pool once.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


def _rss_mib(field: str = "VmHWM") -> float:
    """`VmHWM` (peak) or `VmRSS` (now) of this process, in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _quiet() -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("torch").setLevel(logging.ERROR)
    try:
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()
    except ImportError:
        pass


def load_side(side: str, workdir: str):
    """`(model, processor)` of one side, from the workspace `run_all.py` prepared."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, LlavaForConditionalGeneration

    import openmind_hf  # noqa: F401  (registers OpenMind with the Auto classes)

    path = os.path.join(workdir, "llava" if side == "baseline" else "openmind")
    if side == "baseline":
        model = LlavaForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
    else:
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    return model, AutoProcessor.from_pretrained(path)


# ------------------------------------------------------------------------------------------------------- batches


def batch_shape(batch: dict, pad_id: int) -> dict:
    """Real sample lengths, labelled positions, images, and executed positions of a padded or packed batch."""
    import torch

    ids = batch["input_ids"]
    if "attention_mask" in batch:  # padded
        lengths = batch["attention_mask"].sum(1).tolist()
    else:  # packed: positions restart at 0 for each sample; the tail of a row is a "sample" of pad tokens only
        lengths = []
        for row_ids, row_pos in zip(ids.tolist(), batch["position_ids"].tolist()):
            starts = [i for i, p in enumerate(row_pos) if p == 0] + [len(row_pos)]
            for a, b in zip(starts[:-1], starts[1:]):
                if any(t != pad_id for t in row_ids[a:b]):
                    lengths.append(b - a)
    images = batch.get("pixel_values")
    return {
        "lengths": [int(x) for x in lengths],
        "real_tokens": int(sum(lengths)),
        "positions": int(ids.numel()),
        "labelled": int((batch["labels"][:, 1:] != -100).sum()),
        "images": int(images.shape[0]) if torch.is_tensor(images) else 0,
    }


class RecordingCollator:
    """Wraps a collator; keeps the shape of every batch it builds, and its build time."""

    def __init__(self, collator, pad_id: int):
        self.collator, self.pad_id, self.shapes, self.seconds = collator, pad_id, [], []

    def __call__(self, examples):
        start = time.perf_counter()
        batch = self.collator(examples)
        self.seconds.append(time.perf_counter() - start)
        self.shapes.append(batch_shape(batch, self.pad_id))
        return batch

    def __getattr__(self, name):  # TRL reads attributes of its collator
        if name.startswith("__") or name in ("collator", "pad_id", "shapes", "seconds"):
            raise AttributeError(name)
        return getattr(self.collator, name)


# ----------------------------------------------------------------------------------------------------------- sft


def _sft_args(args, output_dir: str, side: str):
    from trl import SFTConfig

    common = dict(
        output_dir=output_dir,
        per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup + args.steps,
        learning_rate=2e-5,
        lr_scheduler_type="constant",
        logging_steps=10_000,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=args.bf16,  # CPU autocast to bfloat16 (oneDNN's AVX512-BF16 / AMX kernels); fp32 master weights
        fp16=False,
        seed=0,
        data_seed=0,
        dataloader_num_workers=0,
        activation_checkpointing=args.activation_checkpointing,
        disable_tqdm=True,
        max_length=None,  # never cut a sample: both sides train on exactly the same tokens
        assistant_only_loss=True,
    )
    if side == "baseline" and args.tuned:
        # TRL at its best on image data: packing, padding_free and pad_to_multiple_of are refused for vision datasets
        # (TRL 1.16 raises), Liger's kernels are Triton (GPU only): what applies on CPU is compiling the model.
        common.update(torch_compile=True)
    if side == "openmind":
        # Our collator renders, labels (assistant-only, from the same {% generation %} markers) and packs.
        common.update(remove_unused_columns=False, dataset_kwargs={"skip_prepare_dataset": True})
    return SFTConfig(**common)


def run_sft(args) -> dict:
    import gc
    import tempfile

    import torch
    from datasets import load_from_disk
    from flops import UsefulFlops, count_flops
    from transformers import TrainerCallback
    from workload import load_config, set_trainable

    config = load_config(args.workdir)
    dataset = load_from_disk(os.path.join(args.workdir, "dataset"))
    model, processor = load_side(args.side, args.workdir)
    set_trainable(model, config)
    output_dir = tempfile.mkdtemp(prefix=f"bench-sft-{args.side}-")
    if args.side == "baseline":
        from trl import SFTTrainer

        trainer = SFTTrainer(model=model, args=_sft_args(args, output_dir, "baseline"), train_dataset=dataset,
                             processing_class=processor)  # fmt: skip
    else:
        from openmind_hf.data.dataset import RecordCollator as OpenMindCollator  # HF rows: normalised first
        from openmind_hf.training.trainers import OpenMindSFTTrainer

        collator = OpenMindCollator(
            processor, packing=not args.no_packing, max_length=args.pack_length, truncation_policy="keep"
        )
        trainer = OpenMindSFTTrainer(model=model, args=_sft_args(args, output_dir, "openmind"), train_dataset=dataset,
                                     data_collator=collator, processing_class=processor)  # fmt: skip
    recorder = RecordingCollator(trainer.data_collator, processor.tokenizer.pad_token_id)
    trainer.data_collator = recorder

    ends: list[float] = []
    cpu_ends: list[float] = []  # CPU seconds this process got (wall time also counts waiting for a shared core)
    losses: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *_, **__):
            ends.append(time.perf_counter())
            cpu_ends.append(time.process_time())

    trainer.add_callback(Clock())
    # The loss of every micro-step, as the trainer computed it (to compare the sides' first steps).
    original_compute_loss = trainer.compute_loss

    def compute_loss(*a, **kw):
        out = original_compute_loss(*a, **kw)
        loss = out[0] if isinstance(out, tuple) else out
        losses.append(float(loss.detach()))
        return out

    trainer.compute_loss = compute_loss
    gc.collect()
    rss_before = _rss_mib("VmRSS")
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer.train()
    ends.insert(0, start)
    cpu_ends.insert(0, cpu_start)
    step_seconds = [b - a for a, b in zip(ends[:-1], ends[1:])]
    cpu_seconds = [b - a for a, b in zip(cpu_ends[:-1], cpu_ends[1:])][args.warmup :]
    measured = step_seconds[args.warmup :]
    shapes = recorder.shapes[: len(step_seconds)]
    measured_shapes = shapes[args.warmup :]
    peak = _rss_mib("VmHWM")

    # Useful FLOPs of the measured steps (the same samples on both sides), and (once) what one real step executes.
    counter = UsefulFlops(model)
    useful = [counter.step(s["lengths"], s["labelled"], s["images"]).total for s in measured_shapes]
    executed = None
    if args.count_executed:
        batch = recorder.collator(list(dataset.select(range(args.batch_size))))
        model.train()

        def one_step():
            inputs = trainer._prepare_inputs(dict(batch))
            trainer.compute_loss(model, inputs).backward()

        shape = batch_shape(batch, processor.tokenizer.pad_token_id)
        executed = {
            "executed_flops": count_flops(one_step),
            "useful": counter.step(shape["lengths"], shape["labelled"], shape["images"]).as_dict(),
        }
        executed["executed_over_useful"] = executed["executed_flops"] / executed["useful"]["total"]
        model.zero_grad(set_to_none=True)

    total_time = sum(measured)
    samples = sum(len(s["lengths"]) for s in measured_shapes)
    real_tokens = sum(s["real_tokens"] for s in measured_shapes)
    positions = sum(s["positions"] for s in measured_shapes)
    return {
        "step_seconds": measured,
        "warmup_step_seconds": step_seconds[: args.warmup],
        "samples_per_s": samples / total_time,
        "tokens_per_s": real_tokens / total_time,  # real (non-pad) tokens
        "positions_per_s": positions / total_time,  # what was executed, padding included
        "padding_fraction": 1 - real_tokens / positions,
        "useful_flops_per_s": sum(useful) / total_time,
        "cpu_step_seconds": cpu_seconds,
        "useful_flops_per_cpu_s": sum(useful) / sum(cpu_seconds),
        "useful_flops_per_step": sum(useful) / len(useful),
        "executed_flops_first_rows": executed,  # one step on the dataset's first batch_size rows
        "flop_model": counter.describe(),
        "collate_seconds_per_batch": sum(recorder.seconds[: len(step_seconds)]) / max(1, len(step_seconds)),
        "losses": losses[: len(step_seconds)],
        "peak_rss_mib": peak,
        "rss_before_train_mib": rss_before,
        "trainer": type(trainer).__name__,
        "collator": type(recorder.collator).__name__,
        "loss_path": "model labelled-positions loss"
        if args.side == "openmind"
        else "TRL fused LM head (every position on CPU)",
        "packing": args.side == "openmind" and not args.no_packing,
        "torch_threads": torch.get_num_threads(),
    }


# ------------------------------------------------------------------------------------------------------ generate


def _prompt(processor, dataset):
    """Batch-1 generation input: the first row's image and first question, with the generation prompt."""
    row = dataset[0]
    image = row["images"][0]
    question = next(b["text"] for b in row["messages"][0]["content"] if b["type"] == "text")
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )


def generation_kwargs(max_new_tokens: int, fast: bool, device="cpu", pad_token_id: int = 0) -> dict:
    """Greedy, exactly `max_new_tokens` tokens: end-of-sequence is switched off (a random model may emit it at any
    point), rather than forced away by `min_new_tokens`, whose processor scans the whole vocabulary every step and
    would add the same per-token cost to both sides. `fast` adds `fast_decoding_kwargs`: a static KV cache and a
    compiled decode step (OpenMind's default path, and the "tuned" baseline: transformers' own switches, which
    `LlavaForConditionalGeneration.generate` takes as well)."""
    from transformers import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=None, pad_token_id=pad_token_id
    )
    kwargs = {"generation_config": config}
    if fast:  # the same transformers settings on both sides (the baseline's "tuned" column)
        from openmind_hf.modeling.generation_openmind import fast_decoding_kwargs

        kwargs.update(fast_decoding_kwargs(device))
    return kwargs


def decode_bytes(model, batch: int, context: float) -> dict:
    """Bytes one decode step must read at least (fp32 or whatever the weights hold): every weight of the LM body and
    head once per step (shared by the `batch` rows), one embedding row per row, and each row's live KV cache
    (`context` positions on average). The embedding table itself is not read: a lookup touches one row."""
    lm = model.model.language_model
    embed = lm.get_input_embeddings().weight
    body = sum(p.numel() * p.element_size() for p in lm.parameters() if p is not embed)
    head = sum(p.numel() * p.element_size() for p in model.lm_head.parameters())
    text = model.config.get_text_config()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv_per_position = 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * embed.element_size()
    kv = batch * context * kv_per_position
    rows = batch * embed.shape[1] * embed.element_size()
    return {"lm_body_weights": body, "lm_head_weights": head, "embedding_rows": rows, "kv_cache": kv,
            "per_step": body + head + rows + kv, "batch": batch}  # fmt: skip


def _time_compiled_steps(model, sink: list):
    """Wraps transformers' compiled decode step (`get_compiled_call`) so each one-token call's wall time lands in
    `sink`: on CPU every kernel is synchronous, so this is the compiled step's whole cost; the rest of the per-token
    time is `generate()`'s own loop (inputs preparation, logits processors, stopping checks, concatenation)."""
    original = model.get_compiled_call

    def get_compiled_call(compile_config):
        compiled = original(compile_config)

        def call(**kwargs):
            start, cpu_start = time.perf_counter(), time.process_time()
            out = compiled(**kwargs)
            ids = kwargs.get("input_ids")
            if ids is not None and ids.shape[-1] == 1:
                sink.append((time.perf_counter() - start, time.process_time() - cpu_start))
            return out

        return call

    model.get_compiled_call = get_compiled_call


def run_generate(args) -> dict:
    import statistics

    import torch
    from datasets import load_from_disk

    dataset = load_from_disk(os.path.join(args.workdir, "dataset"))
    model, processor = load_side(args.side, args.workdir)
    model.eval()
    inputs = _prompt(processor, dataset)
    if args.gen_batch > 1:  # the same prompt on every row: no padding, every row decodes the same length
        inputs = {k: v.repeat(args.gen_batch, *[1] * (v.dim() - 1)) if torch.is_tensor(v) else v
                  for k, v in inputs.items()}  # fmt: skip
    pad_id = processor.tokenizer.pad_token_id
    n = args.new_tokens
    fast = (args.side == "openmind" and not args.no_fast_decode) or (args.side == "baseline" and args.tuned)
    step_seconds: list[float] = []
    if fast:
        _time_compiled_steps(model, step_seconds)

    cpu: dict[int, list[float]] = {1: [], n: []}  # CPU seconds this process got (the machine is shared)

    def timed(tokens: int) -> tuple[float, torch.Tensor]:
        start, cpu_start = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            out = model.generate(**inputs, **generation_kwargs(tokens, fast, model.device, pad_id))
        cpu.setdefault(tokens, []).append(time.process_time() - cpu_start)
        return time.perf_counter() - start, out

    warm_start = time.perf_counter()
    for _ in range(2):  # warm-up (and, on the fast path, compilation) outside the timings
        timed(1)
        _, out = timed(n)
    warmup_seconds = time.perf_counter() - warm_start
    step_seconds.clear()
    cpu[1].clear()
    cpu[n].clear()
    ttft, full = [], []
    for _ in range(args.gen_repeats):
        ttft.append(timed(1)[0])
        full.append(timed(n)[0])
    ttft_s, full_s = statistics.median(ttft), statistics.median(full)
    per_step_s = (full_s - ttft_s) / (n - 1)  # one decode step serves every row of the batch
    new_tokens = out[0, inputs["input_ids"].shape[1] :].tolist()
    prompt = int(inputs["input_ids"].shape[1])
    result = {
        "prompt_tokens": prompt,
        "batch": args.gen_batch,
        "new_tokens": n,
        "ttft_s": ttft_s,
        "ttft_samples_s": ttft,
        "generate_s": full_s,
        "generate_samples_s": full,
        "decode_step_s": per_step_s,
        "decode_tokens_per_s": args.gen_batch / per_step_s,
        # CPU time per step: what the step costs when it has the core (wall time also counts waiting for it).
        "decode_step_cpu_s": (statistics.median(cpu[n]) - statistics.median(cpu[1])) / (n - 1),
        "warmup_s": warmup_seconds,
        "generated_ids": new_tokens,
        "fast_decode": fast,
        "decode_bytes": decode_bytes(model, args.gen_batch, prompt + n / 2),
        "peak_rss_mib": _rss_mib("VmHWM"),
        "torch_threads": torch.get_num_threads(),
    }
    if step_seconds:  # where a decode step's time goes: the compiled forward vs generate()'s loop around it
        compiled = statistics.median(wall for wall, _ in step_seconds)
        result["compiled_step_s"] = compiled
        result["compiled_step_cpu_s"] = statistics.median(c for _, c in step_seconds)
        result["generate_loop_s_per_step"] = per_step_s - compiled
    return result


# ------------------------------------------------------------------------------------------------------- collate


def run_collate(args) -> dict:
    import copy

    from datasets import load_from_disk
    from workload import load_config

    config = load_config(args.workdir)
    dataset = load_from_disk(os.path.join(args.workdir, "dataset"))
    _, processor = load_side(args.side, args.workdir)
    if args.side == "baseline":
        from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

        variants = {"padded": DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True)}
    else:
        from openmind_hf.data.dataset import RecordCollator as OpenMindCollator  # HF rows: normalised first

        variants = {
            "padded": OpenMindCollator(processor),
            "packed": OpenMindCollator(processor, packing=True, max_length=args.pack_length, truncation_policy="keep"),
        }
    n_batches = min(args.collate_batches, len(dataset) // config.batch_size)
    batches = [
        [dataset[i] for i in range(b * config.batch_size, (b + 1) * config.batch_size)] for b in range(n_batches)
    ]
    result = {}
    for name, collator in variants.items():
        collator(copy.deepcopy(batches[0]))  # warm-up
        real = positions = 0
        start, cpu_start = time.perf_counter(), time.process_time()
        for rows in batches:
            shape = batch_shape(collator(copy.deepcopy(rows)), processor.tokenizer.pad_token_id)
            real += shape["real_tokens"]
            positions += shape["positions"]
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        result[name] = {
            "samples_per_s": n_batches * config.batch_size / seconds,
            "samples_per_cpu_s": n_batches * config.batch_size / cpu_seconds,  # the machine may be shared
            "padding_fraction": 1 - real / positions,
            "batches": n_batches,
        }
    result["peak_rss_mib"] = _rss_mib("VmHWM")
    return result


def run_peak(args) -> dict:
    """fp32 matmul peak (the MFU denominator), bf16 matmul peak (what bf16 could buy; AVX512-BF16 / AMX kernels via
    oneDNN where the CPU has them) and the memory bandwidth (the decode limit)."""
    import torch
    from flops import matmul_peak, memory_bandwidth

    result = matmul_peak()
    result["bf16"] = matmul_peak(dtype=torch.bfloat16)
    result["memory_bandwidth"] = memory_bandwidth()
    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else []
    result["cpu_flags"] = sorted({f for f in flags if f.startswith(("amx", "avx512_bf16", "avx512f"))})
    return result


def run_steps(args) -> dict:
    """Optimizer steps/s of the demo's SFT stage on the tiny preset (`make demo`'s model, data and settings, the
    recipe's own `build_trainer`), and the same batches through a bare loop (forward, backward, clip, AdamW step):
    the difference is the trainer's per-step overhead (data loading + collation, callbacks, logging, bookkeeping)."""
    import statistics
    import tempfile
    from pathlib import Path

    import torch
    from transformers import TrainerCallback

    from openmind_hf import build_tiny_preset
    from openmind_hf.data.synthetic import write_synthetic_dataset
    from openmind_hf.training.demo import DEMO_OVERRIDES, DemoConfig, _stage_args
    from openmind_hf.training.recipe_loader import load_recipe

    work = Path(tempfile.mkdtemp(prefix="bench-steps-"))
    cfg = DemoConfig(output=str(work))
    write_synthetic_dataset(work / "data", seed=0, num_train=cfg.batch_size * (args.warmup + args.steps) * 2,
                            num_test=0)  # fmt: skip
    build_tiny_preset(work / "init", seed=0, **DEMO_OVERRIDES)
    stage = _stage_args("sft", str(work / "init"), work / "data" / "instruct_train.jsonl", work / "out", cfg,
                        args.warmup + args.steps, cfg.sft_lr)  # fmt: skip
    model_args, data_args, _, training_args = stage
    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *_, **__):
            ends.append(time.perf_counter())

    trainer, _, _ = load_recipe("sft").build_trainer(model_args, data_args, training_args, callbacks=[Clock()])
    start = time.perf_counter()
    trainer.train()
    steps = [b - a for a, b in zip([start, *ends[:-1]], ends)][args.warmup :]

    # The same kind of batches through a bare loop: what the step itself costs.
    model, loader = trainer.model, trainer.get_train_dataloader()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.sft_lr)
    batches = [trainer._prepare_inputs(b) for _, b in zip(range(args.warmup + args.steps), loader)]
    model.train()
    bare = []
    for batch in batches:
        t0 = time.perf_counter()
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        bare.append(time.perf_counter() - t0)
    bare = bare[args.warmup :]
    step_s, bare_s = statistics.median(steps), statistics.median(bare)
    return {
        "batch_size": cfg.batch_size,
        "trainer_step_s": step_s,
        "trainer_steps_per_s": 1 / step_s,
        "bare_step_s": bare_s,
        "bare_steps_per_s": 1 / bare_s,
        "overhead_s_per_step": step_s - bare_s,
        "overhead_share": (step_s - bare_s) / step_s,
        "trainer_step_seconds": steps,
        "bare_step_seconds": bare,
        "torch_threads": torch.get_num_threads(),
    }


TASKS = {"sft": run_sft, "generate": run_generate, "collate": run_collate, "peak": run_peak, "steps": run_steps}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--side", choices=["baseline", "openmind"], default="openmind")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1, help="SFT steps run before timing")
    parser.add_argument("--steps", type=int, default=4, help="timed SFT steps")
    parser.add_argument("--pack-length", type=int, default=None, help="packed row length (None: one row per batch)")
    parser.add_argument("--no-packing", action="store_true", help="OpenMind side: padded batches instead")
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--bf16", action="store_true", help="SFT: bf16 autocast (fp32 weights and optimizer)")
    parser.add_argument("--count-executed", action="store_true", help="also count the FLOPs one real step executes")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--gen-repeats", type=int, default=5)
    parser.add_argument("--no-fast-decode", action="store_true", help="OpenMind side: stock generate settings")
    parser.add_argument(
        "--tuned", action="store_true", help="baseline side: static cache + compiled decode step (as OpenMind's)"
    )
    parser.add_argument("--gen-batch", type=int, default=1, help="rows per generate() call (the same prompt)")
    parser.add_argument("--collate-batches", type=int, default=8)
    args = parser.parse_args(argv)
    _pin_threads(args.threads)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    _quiet()
    result = TASKS[args.task](args)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
