"""Data-path benchmark: load + process + collate throughput against TRL's vision collator, and padding waste.

    PYTHONPATH=src python benchmarks/bench_data.py --num-samples 256 --batch-size 8 --output benchmarks/results/data.json

Both sides get the same image samples of the synthetic demo set (TRL's collator has no audio path), the same
tokenizer, the same SigLIP PIL image processor (32 px, 16 tokens per image) and the same chat template with
`{% generation %}` markers (assistant-only labels on both sides). TRL's side is `DataCollatorForVisionLanguageModeling`
with a locally built `LlavaProcessor`; "load" there is `PIL.Image.open(...).convert("RGB")`. Ours is
`OpenMindDataset` (decode with the bad-data checks) + `OpenMindCollator`, padded and packed. Single process.
Padding waste = pad tokens / all tokens in the batches.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path


def _timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _trl_waste(batches: list[dict]) -> float:
    total = sum(b["input_ids"].numel() for b in batches)
    return 1.0 - sum(int(b["attention_mask"].sum()) for b in batches) / total


def _our_waste(collator, run) -> float:
    """Pad tokens / all tokens, from the collator's own counts over one pass."""
    collator.stats.update(tokens=0, pad_tokens=0)
    run(collator)
    return collator.padding_waste


def build_llava_processor(processor):
    """A tiny LLaVA processor with OpenMind's tokenizer, image processor and chat template."""
    from transformers import LlavaProcessor

    return LlavaProcessor(
        image_processor=processor.image_processor,
        tokenizer=processor.tokenizer,
        patch_size=8,
        vision_feature_select_strategy="full",
        chat_template=processor.chat_template,
        image_token="<image>",
        num_additional_image_tokens=0,
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--pack-max-length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)

    import torch
    from PIL import Image
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from openmind_hf import build_tiny_preset
    from openmind_hf.data.dataset import OpenMindDataset
    from openmind_hf.data.synthetic import write_synthetic_dataset
    from openmind_hf.processing.collator import OpenMindCollator

    torch.set_num_threads(1)
    _, processor = build_tiny_preset(seed=0)
    llava = build_llava_processor(processor)
    work = Path(tempfile.mkdtemp(prefix="bench-data-"))
    write_synthetic_dataset(work, seed=0, num_train=args.num_samples * 3, num_test=0)
    records = [json.loads(x) for x in (work / "instruct_train.jsonl").read_text().splitlines()]
    images_only = [r for r in records if "image" in r and "reasoning_content" not in r["conversations"][-1]]
    images_only = images_only[: args.num_samples]
    subset = work / "bench.jsonl"
    subset.write_text("".join(json.dumps(r) + "\n" for r in images_only))
    everything = work / "all.jsonl"
    everything.write_text("".join(json.dumps(r) + "\n" for r in records[: args.num_samples]))

    dataset = OpenMindDataset(subset)
    hf_rows = [
        {"messages": s["messages"], "image_paths": [str(work / r["image"])]}
        for s, r in zip((dataset.load(ref, decode=False) for ref in dataset._refs), images_only)
    ]
    trl = DataCollatorForVisionLanguageModeling(llava, assistant_only_loss=True)

    def run_trl():
        batches = []
        for chunk in _batches(hf_rows, args.batch_size):
            examples = [
                {"messages": row["messages"], "images": [Image.open(p).convert("RGB") for p in row["image_paths"]]}
                for row in chunk
            ]
            batches.append(trl(examples))
        return batches

    def run_ours(collator, ds=dataset):
        return [collator([ds[i] for i in chunk]) for chunk in _batches(list(range(len(ds))), args.batch_size)]

    padded = OpenMindCollator(processor)
    packed = OpenMindCollator(processor, packing=True)
    packed_rows = OpenMindCollator(processor, packing=True, max_length=args.pack_max_length)
    n = len(dataset)
    results = {
        "samples": n,
        "batch_size": args.batch_size,
        "threads": 1,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "samples_per_s": {
            "trl_vision_collator_llava_processor": n / _timed(run_trl, args.repeats),
            "openmind_padded": n / _timed(lambda: run_ours(padded), args.repeats),
            "openmind_packed": n / _timed(lambda: run_ours(packed), args.repeats),
        },
    }
    trl_batches, padded_batches = run_trl(), run_ours(padded)
    # Same samples, same template: both sides must label the same number of tokens.
    labelled = [sum(int((b["labels"] != -100).sum()) for b in bs) for bs in (trl_batches, padded_batches)]
    results["labelled_tokens"] = {"trl": labelled[0], "openmind": labelled[1]}
    results["padding_waste"] = {
        "trl_padded": _trl_waste(trl_batches),
        "openmind_padded": _our_waste(padded, run_ours),
        "openmind_packed_one_row_per_batch": _our_waste(packed, run_ours),
        f"openmind_packed_rows_max_{args.pack_max_length}": _our_waste(packed_rows, run_ours),
    }
    mixed = OpenMindDataset(everything)
    results["openmind_all_modalities_samples_per_s"] = len(mixed) / _timed(
        lambda: run_ours(packed, mixed), args.repeats
    )
    results["openmind_all_modalities_padding_waste"] = {
        "padded": _our_waste(padded, lambda c: run_ours(c, mixed)),
        "packed": _our_waste(packed, lambda c: run_ours(c, mixed)),
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()
