"""fp32 vs bf16 autocast for OpenMind SFT on the benchmark workload, interleaved in one process.

    python benchmarks/bench_bf16.py --workdir DIR --steps 5 --output benchmarks/results/bf16.json

`DIR` is a workspace `run_all.py` prepared (`--workdir`). Two copies of the same converted model train on the same
packed batches (rows of 1024, labelled-positions loss), each with its own fused AdamW: one in fp32, one under
`torch.autocast("cpu", dtype=torch.bfloat16)` (fp32 master weights and optimizer, which is what `--bf16` gives the
trainer on CPU). The order alternates every step so drifting load hits both alike. Reports per-step wall and CPU
seconds (the CPU time this process was given: the machine may be shared), the losses of every step and their largest
difference ("equal loss curves"), the machine's load, and the CPU's bf16 flags (AMX or AVX512-BF16).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    from worker import _pin_threads, _quiet

    _pin_threads(1)
    _quiet()
    import torch
    from datasets import load_from_disk
    from worker import load_side
    from workload import load_config, set_trainable

    from openmind_hf.data.dataset import RecordCollator

    load_start = list(os.getloadavg())
    dataset = load_from_disk(os.path.join(args.workdir, "dataset"))
    config = load_config(args.workdir)
    model, processor = load_side("openmind", args.workdir)
    set_trainable(model, config)
    model.train()
    model.loss_only_when_labelled = True
    models = {"fp32": model, "bf16": copy.deepcopy(model)}
    optimizers = {
        name: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=2e-5, fused=True)
        for name, m in models.items()
    }
    collator = RecordCollator(processor, packing=True, max_length=1024, truncation_policy="keep")
    size = config.batch_size
    batches = [collator([dataset[i] for i in range(b * size, (b + 1) * size)]) for b in range(args.steps)]
    result = {name: {"seconds": [], "cpu_seconds": [], "losses": []} for name in models}
    for step, batch in enumerate(batches):
        for name in ("fp32", "bf16") if step % 2 == 0 else ("bf16", "fp32"):
            wall, cpu = time.perf_counter(), time.process_time()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bf16"):
                loss = models[name](**batch).loss
            loss.backward()
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
            result[name]["seconds"].append(time.perf_counter() - wall)
            result[name]["cpu_seconds"].append(time.process_time() - cpu)
            result[name]["losses"].append(loss.item())
    for name in models:  # the first step of each warms up (allocations, oneDNN primitives)
        result[name]["median_step_s"] = statistics.median(result[name]["seconds"][1:])
        result[name]["median_cpu_step_s"] = statistics.median(result[name]["cpu_seconds"][1:])
    result["speedup_wall"] = result["fp32"]["median_step_s"] / result["bf16"]["median_step_s"]
    result["speedup_cpu"] = result["fp32"]["median_cpu_step_s"] / result["bf16"]["median_cpu_step_s"]
    pairs = zip(result["fp32"]["losses"], result["bf16"]["losses"])
    result["loss_max_abs_diff"] = max(abs(a - b) for a, b in pairs)
    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else []
    result["cpu_flags"] = sorted({f for f in flags if f.startswith(("amx", "avx512_bf16"))})
    result["load_average_start"], result["load_average_end"] = load_start, list(os.getloadavg())
    result["command"] = "python benchmarks/bench_bf16.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return result


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
