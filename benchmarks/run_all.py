"""OpenMind vs transformers LLaVA + TRL, side by side: `make bench`.

    python benchmarks/run_all.py --output benchmarks/results/latest.json           # the "small" CPU config
    python benchmarks/run_all.py --output /tmp/smoke.json --smoke                  # toy sizes, seconds

1. Builds the workload (`workload.py`): a 32k-token tokenizer, a random LLaVA (SigLIP 128 px / 64 image tokens +
   Qwen2-style LM, hidden 256, 4 layers, untied), its OpenMind conversion (identical weights) and a mixed dataset.
2. Runs the correctness gate (`gate.py`); if it fails, writes the report and exits 1 without timing anything.
3. Measures each side in its own process (`worker.py`) with pinned threads, A/B runs interleaved (the order flips
   every repeat): SFT steps, generation (TTFT, decode tokens/s), processor + collator throughput, and a fp32 matmul
   peak at the same thread count for MFU.
4. Writes medians, ratios (OpenMind / baseline) and the raw runs to `--output`, and a markdown table next to it
   (`.md`) and on stdout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(REPO_ROOT / "src")]

SIDES = ("baseline", "openmind")
# Ratio targets (OpenMind / baseline) from the performance issue; "max" ones must stay below.
TARGETS = {
    "sft_samples_per_s": (">=", 3.0),
    "peak_rss": ("<=", 0.4),
    "decode_tokens_per_s": (">=", 1.2),
    "ttft": ("<=", 1.0),
}


def _child_env(threads: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH_DIR), str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    return env


def run_worker(task: str, side: str, args, extra: list[str] | None = None) -> dict:
    """One measurement in a fresh process; returns its RESULT dict (raises with the child's stderr on failure)."""
    command = [sys.executable, str(BENCH_DIR / "worker.py"), task, "--side", side, "--workdir", args.workdir,
               "--threads", str(args.threads), *(extra or [])]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=_child_env(args.threads), timeout=args.timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {task}/{side} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["process_wall_s"] = time.perf_counter() - start
    print(f"  {task:8s} {side:8s} {result['process_wall_s']:6.1f} s", flush=True)
    return result


def interleaved(
    task: str, args, repeats: int, variants: dict[str, tuple[str, list[str]]], first_only: list[str] | None = None
) -> dict[str, list[dict]]:
    """`repeats` runs of each variant (`label -> (side, worker args)`), the order reversed every other repeat so
    drifting machine load hits every variant alike. `first_only`: extra worker args for the first repeat."""
    runs: dict[str, list[dict]] = {label: [] for label in variants}
    for r in range(repeats):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for label in order:
            side, extra = variants[label]
            runs[label].append(run_worker(task, side, args, [*extra, *(first_only or [] if r == 0 else [])]))
    return runs


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def hardware() -> dict:
    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    ) if os.path.exists("/proc/cpuinfo") else platform.processor()  # fmt: skip
    mem = None
    if os.path.exists("/proc/meminfo"):
        mem = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal"))) / 2**20
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"cpu": model, "logical_cpus": os.cpu_count(), "memory_gib": mem, "platform": platform.platform(),
            "python": platform.python_version(), "load_average_at_start": load}  # fmt: skip


def versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "trl", "accelerate", "datasets")}


# -------------------------------------------------------------------------------------------------------- report


def summarise(raw: dict, peak_flops: float) -> dict:
    """Medians per side and the OpenMind / baseline ratios."""
    sides = {}
    for side in SIDES:
        sft, gen = raw["sft"][side], raw["generate"][side]
        sides[side] = {
            "sft_samples_per_s": median_of(sft, "samples_per_s"),
            "sft_tokens_per_s": median_of(sft, "tokens_per_s"),
            "sft_positions_per_s": median_of(sft, "positions_per_s"),
            "sft_step_s": statistics.median(s for run in sft for s in run["step_seconds"]),
            "sft_padding_fraction": median_of(sft, "padding_fraction"),
            "sft_peak_rss_mib": median_of(sft, "peak_rss_mib"),
            "sft_useful_flops_per_s": median_of(sft, "useful_flops_per_s"),
            "sft_mfu": median_of(sft, "useful_flops_per_s") / peak_flops,
            "sft_executed_over_useful_flops": sft[0]["executed_flops_first_rows"]["executed_over_useful"],
            "sft_first_step_loss": sft[0]["losses"][0],
            "ttft_s": median_of(gen, "ttft_s"),
            "decode_tokens_per_s": median_of(gen, "decode_tokens_per_s"),
            "generate_peak_rss_mib": median_of(gen, "peak_rss_mib"),
            "collate": raw["collate"][side][0],
        }
    stock = raw["generate"]["openmind_stock_generate"]
    sides["openmind"]["stock_generate_ttft_s"] = median_of(stock, "ttft_s")
    sides["openmind"]["stock_generate_decode_tokens_per_s"] = median_of(stock, "decode_tokens_per_s")
    b, o = sides["baseline"], sides["openmind"]
    ratios = {
        "sft_samples_per_s": o["sft_samples_per_s"] / b["sft_samples_per_s"],
        "sft_tokens_per_s": o["sft_tokens_per_s"] / b["sft_tokens_per_s"],
        "peak_rss": o["sft_peak_rss_mib"] / b["sft_peak_rss_mib"],
        "mfu": o["sft_mfu"] / b["sft_mfu"],
        "decode_tokens_per_s": o["decode_tokens_per_s"] / b["decode_tokens_per_s"],
        "ttft": o["ttft_s"] / b["ttft_s"],
        "collate_samples_per_s": o["collate"]["packed"]["samples_per_s"] / b["collate"]["padded"]["samples_per_s"],
        "decode_tokens_per_s_stock_generate": o["stock_generate_decode_tokens_per_s"] / b["decode_tokens_per_s"],
        "ttft_stock_generate": o["stock_generate_ttft_s"] / b["ttft_s"],
    }
    met = {k: (ratios[k] >= v if op == ">=" else ratios[k] <= v) for k, (op, v) in TARGETS.items()}
    same_tokens = raw["generate"]["baseline"][0]["generated_ids"] == raw["generate"]["openmind"][0]["generated_ids"]
    return {"sides": sides, "ratios": ratios, "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()},
            "targets_met": met, "same_greedy_tokens": same_tokens}  # fmt: skip


def markdown(report: dict) -> str:
    s, r = report["summary"]["sides"], report["ratios"]
    b, o = s["baseline"], s["openmind"]
    targets, met = report["summary"]["targets"], report["summary"]["targets_met"]

    def row(name, key, bval, oval, fmt, ratio_key=None):
        ratio = r.get(ratio_key or key)
        target = targets.get(ratio_key or key, "")
        ok = {True: "yes", False: "NO"}.get(met.get(ratio_key or key), "")
        ratio_txt = f"{ratio:.2f}" if ratio is not None else ""
        return f"| {name} | {fmt.format(bval)} | {fmt.format(oval)} | {ratio_txt} | {target} | {ok} |"

    lines = [
        f"Config `{report['config']['name']}` - {report['date']} - {report['hardware']['cpu']} - "
        f"{report['settings']['threads']} thread(s) per process - {report['settings']['repeats']} interleaved repeats",
        "",
        "| Metric | LLaVA + TRL | OpenMind | Ratio (OM / base) | Target | Met |",
        "|---|---|---|---|---|---|",
        row("SFT samples/s", "sft_samples_per_s", b["sft_samples_per_s"], o["sft_samples_per_s"], "{:.2f}"),
        row("SFT real tokens/s", "sft_tokens_per_s", b["sft_tokens_per_s"], o["sft_tokens_per_s"], "{:.0f}"),
        row("SFT peak RSS (MiB)", "peak_rss", b["sft_peak_rss_mib"], o["sft_peak_rss_mib"], "{:.0f}"),
        row("SFT MFU (vs measured matmul peak)", "mfu", 100 * b["sft_mfu"], 100 * o["sft_mfu"], "{:.1f}%"),
        row("SFT executed / useful FLOPs", "-", b["sft_executed_over_useful_flops"],
            o["sft_executed_over_useful_flops"], "{:.2f}"),
        row("SFT padding (share of positions)", "-", 100 * b["sft_padding_fraction"],
            100 * o["sft_padding_fraction"], "{:.1f}%"),
        row("Decode tokens/s (KV cache, batch 1)", "decode_tokens_per_s", b["decode_tokens_per_s"],
            o["decode_tokens_per_s"], "{:.1f}"),
        row("TTFT (ms)", "ttft", 1000 * b["ttft_s"], 1000 * o["ttft_s"], "{:.1f}"),
        row("Decode tokens/s, OpenMind with stock generate()", "decode_tokens_per_s_stock_generate",
            b["decode_tokens_per_s"], o["stock_generate_decode_tokens_per_s"], "{:.1f}"),
        row("TTFT (ms), OpenMind with stock generate()", "ttft_stock_generate", 1000 * b["ttft_s"],
            1000 * o["stock_generate_ttft_s"], "{:.1f}"),
        row("Processor + collator samples/s", "collate_samples_per_s", b["collate"]["padded"]["samples_per_s"],
            o["collate"]["packed"]["samples_per_s"], "{:.0f}"),
    ]  # fmt: skip
    om_pad = o["collate"]
    lines += [
        "",
        f"Padding waste: baseline (TRL vision collator, padded) {100 * b['collate']['padded']['padding_fraction']:.1f}%; "
        f"OpenMind padded {100 * om_pad['padded']['padding_fraction']:.1f}%, packed "
        f"{100 * om_pad['packed']['padding_fraction']:.1f}%. Matmul peak: "
        f"{report['matmul_peak']['flops_per_s'] / 1e9:.1f} GFLOP/s. Gate: logits max |diff| "
        f"{report['gate']['logits_max_abs_diff']:.1e}, loss rel diff {report['gate']['loss_rel_diff']:.1e}.",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="OpenMind vs transformers LLaVA + TRL, side by side.")
    parser.add_argument("--output", default=str(BENCH_DIR / "results" / "latest.json"))
    parser.add_argument("--smoke", action="store_true", help="toy sizes and one repeat: checks the pipeline only")
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads per measuring process")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved A/B training runs per side")
    parser.add_argument("--gen-runs", type=int, default=None, help="interleaved generation runs per variant")
    parser.add_argument("--sft-steps", type=int, default=None, help="timed SFT steps per run")
    parser.add_argument("--warmup", type=int, default=1, help="untimed SFT steps per run")
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens per generate() call")
    parser.add_argument("--gen-repeats", type=int, default=None, help="timed generate() calls per run")
    parser.add_argument(
        "--pack-length", type=int, default=1024, help="OpenMind packed row length in tokens (0: one row per batch)"
    )
    parser.add_argument("--workdir", default=None, help="workspace (default: a fresh temp dir)")
    parser.add_argument(
        "--reuse-workspace", action="store_true", help="use the models and data already in --workdir as they are"
    )
    parser.add_argument("--gate-only", action="store_true", help="stop after the correctness gate (what CI runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per worker process")
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.repeats = args.repeats or (1 if smoke else 3)
    args.gen_runs = args.gen_runs or (1 if smoke else 3)
    args.sft_steps = args.sft_steps or (1 if smoke else 3)
    args.new_tokens = args.new_tokens or (8 if smoke else 64)
    args.gen_repeats = args.gen_repeats or (2 if smoke else 15)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from workload import SMALL, SMOKE, prepare_workspace

    config = SMOKE if args.smoke else SMALL
    wall_start = time.perf_counter()
    if args.reuse_workspace:
        if not args.workdir or not (Path(args.workdir) / "workload.json").is_file():
            raise SystemExit("--reuse-workspace needs --workdir DIR holding a workspace from an earlier run")
        meta = json.loads((Path(args.workdir) / "workload.json").read_text())
    else:
        args.workdir = args.workdir or tempfile.mkdtemp(prefix=f"openmind-bench-{config.name}-")
        meta = prepare_workspace(config, args.workdir, seed=args.seed)
    print(f"workspace {args.workdir} (config {meta['config']['name']})", flush=True)

    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hardware": hardware(),
        "versions": versions(),
        "config": meta["config"],
        "vocab_size_with_specials": meta["vocab_size_with_specials"],
        "settings": {k: v for k, v in vars(args).items() if k not in ("output", "workdir")},
        "command": "python benchmarks/run_all.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)

    from gate import run_gate

    report["gate"] = gate = run_gate(args.workdir, pack_length=args.pack_length or None)
    print(f"gate: {'PASSED' if gate['passed'] else 'FAILED'} {json.dumps(gate)}", flush=True)
    if not gate["passed"]:
        report["error"] = "correctness gate failed: the two sides do not compute the same thing; nothing was timed"
        output.write_text(json.dumps(report, indent=2))
        print(report["error"], file=sys.stderr)
        return 1
    if args.gate_only:
        output.write_text(json.dumps(report, indent=2))
        print(f"wrote {output} (gate only)")
        return 0

    sft_extra = ["--batch-size", str(config.batch_size), "--warmup", str(args.warmup), "--steps", str(args.sft_steps)]
    openmind_sft = sft_extra + (["--pack-length", str(args.pack_length)] if args.pack_length else [])
    collate_extra = ["--pack-length", str(args.pack_length)] if args.pack_length else []
    gen_extra = ["--new-tokens", str(args.new_tokens), "--gen-repeats", str(args.gen_repeats)]
    raw = {"peak": [run_worker("peak", "openmind", args)]}
    raw["collate"] = interleaved(
        "collate", args, 1, {"baseline": ("baseline", []), "openmind": ("openmind", collate_extra)}
    )
    raw["sft"] = interleaved(
        "sft",
        args,
        args.repeats,
        {"baseline": ("baseline", sft_extra), "openmind": ("openmind", openmind_sft)},
        first_only=["--count-executed"],
    )
    # OpenMind decodes with a static cache and a compiled decode step; its stock-generate() run shows what that buys.
    raw["generate"] = interleaved(
        "generate",
        args,
        args.gen_runs,
        {
            "baseline": ("baseline", gen_extra),
            "openmind": ("openmind", gen_extra),
            "openmind_stock_generate": ("openmind", [*gen_extra, "--no-fast-decode"]),
        },
    )
    raw["peak"].append(run_worker("peak", "openmind", args))

    peak = max(raw["peak"], key=lambda p: p["flops_per_s"])
    report["matmul_peak"] = peak
    summary = summarise(raw, peak["flops_per_s"])
    report["summary"] = summary
    report["ratios"] = summary["ratios"]
    report["raw"] = raw
    report["wall_seconds"] = time.perf_counter() - wall_start
    table = markdown(report)
    report["markdown"] = table
    output.write_text(json.dumps(report, indent=2))
    output.with_suffix(".md").write_text(table + "\n")
    print("\n" + table)
    print(f"\nwrote {output} and {output.with_suffix('.md')} in {report['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
