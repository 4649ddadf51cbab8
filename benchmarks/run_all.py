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
# Ratio targets (OpenMind / baseline) from the performance issues (round 2: issue 17); "<=" ones must stay below.
# "_tuned" ratios are against the baseline at its best (static cache + compiled decode; TRL with torch_compile).
TARGETS = {
    "sft_samples_per_s": (">=", 5.0),
    "sft_samples_per_s_tuned": (">=", 2.0),
    "peak_rss": ("<=", 0.3),
    "decode_tokens_per_s_tuned": (">=", 1.5),
    "ttft": ("<=", 1.0),
    "collate_samples_per_s": (">=", 1.0),
    "openmind_mfu": (">=", 0.5),  # share of the measured fp32 matmul peak, not a ratio
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
    start, load_start = time.perf_counter(), os.getloadavg()
    proc = subprocess.run(command, capture_output=True, text=True, env=_child_env(args.threads), timeout=args.timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {task}/{side} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["process_wall_s"] = time.perf_counter() - start
    # The machine's load around every number (other people's jobs share these cores).
    result["load_average_start"], result["load_average_end"] = list(load_start), list(os.getloadavg())
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


def _decode_side(runs: list[dict], bandwidth: dict) -> dict:
    """Decode medians of one generate variant, and the memory-bandwidth bound: bytes a step must read (weights +
    live KV cache) x steps/s, as a share of the measured copy bandwidth (read + write counted) and of the read-only
    bandwidth, both at the largest size (DRAM) and at 64 MiB (the working set's order: maybe cache-resident)."""
    step_s = median_of(runs, "decode_step_s")
    per_step = runs[0]["decode_bytes"]["per_step"]
    out = {
        "ttft_s": median_of(runs, "ttft_s"),
        "decode_tokens_per_s": median_of(runs, "decode_tokens_per_s"),
        "decode_step_s": step_s,
        "batch": runs[0]["batch"],
        "bytes_per_step": per_step,
        "bytes_per_token": per_step / runs[0]["batch"],
        "bytes_per_s": per_step / step_s,
        "peak_rss_mib": median_of(runs, "peak_rss_mib"),
        "load_average": [run["load_average_start"] for run in runs],
    }
    for name, value in (("copy", bandwidth["copy_bytes_per_s"]), ("read", bandwidth["read_bytes_per_s"])):
        out[f"share_of_{name}_bandwidth"] = out["bytes_per_s"] / value
    small = bandwidth["by_size_mib"].get("64")
    if small:
        out["share_of_64mib_read_bandwidth"] = out["bytes_per_s"] / small["read_bytes_per_s"]
    if all("decode_step_cpu_s" in run for run in runs):  # the same shares per CPU-second the process was given
        out["decode_step_cpu_s"] = median_of(runs, "decode_step_cpu_s")
        out["share_of_read_bandwidth_per_cpu_s"] = per_step / out["decode_step_cpu_s"] / bandwidth["read_bytes_per_s"]
    if all("compiled_step_s" in run for run in runs):
        out["compiled_step_s"] = median_of(runs, "compiled_step_s")
        out["generate_loop_s_per_step"] = median_of(runs, "generate_loop_s_per_step")
        out["compiled_step_cpu_s"] = median_of(runs, "compiled_step_cpu_s")
        # The step's floor if it only streamed its bytes at the measured read bandwidth.
        out["bandwidth_floor_s"] = per_step / bandwidth["read_bytes_per_s"]
    return out


def summarise(raw: dict, peak: dict) -> dict:
    """Medians per side (and per baseline setting), the OpenMind / baseline ratios and the limit shares."""
    peak_flops, bandwidth = peak["flops_per_s"], peak["memory_bandwidth"]
    cpu_peak = peak.get("flops_per_cpu_s")  # MFU per CPU-second needs the peak per CPU-second too
    sides = {}
    for label in raw["sft"]:
        sft = raw["sft"][label]
        sides[label] = {
            "sft_samples_per_s": median_of(sft, "samples_per_s"),
            "sft_tokens_per_s": median_of(sft, "tokens_per_s"),
            "sft_positions_per_s": median_of(sft, "positions_per_s"),
            "sft_step_s": statistics.median(s for run in sft for s in run["step_seconds"]),
            "sft_padding_fraction": median_of(sft, "padding_fraction"),
            "sft_peak_rss_mib": median_of(sft, "peak_rss_mib"),
            "sft_useful_flops_per_s": median_of(sft, "useful_flops_per_s"),
            "sft_mfu": median_of(sft, "useful_flops_per_s") / peak_flops,
            # Per CPU-second the process was given: the MFU when it has the core (the machine is shared).
            "sft_mfu_per_cpu_s": median_of(sft, "useful_flops_per_cpu_s") / cpu_peak
            if cpu_peak and all("useful_flops_per_cpu_s" in run for run in sft)
            else None,
            "sft_executed_over_useful_flops": sft[0]["executed_flops_first_rows"]["executed_over_useful"],
            "sft_first_step_loss": sft[0]["losses"][0],
            "sft_load_average": [run["load_average_start"] for run in sft],
        }
    for side in SIDES:
        sides[side]["collate"] = raw["collate"][side][0]
    decode = {label: _decode_side(runs, bandwidth) for label, runs in raw["generate"].items()}
    for side in SIDES:
        sides[side].update({k: decode[side][k] for k in ("ttft_s", "decode_tokens_per_s")})
        sides[side]["generate_peak_rss_mib"] = decode[side]["peak_rss_mib"]
    sides["openmind"]["stock_generate_ttft_s"] = decode["openmind_stock_generate"]["ttft_s"]
    sides["openmind"]["stock_generate_decode_tokens_per_s"] = decode["openmind_stock_generate"]["decode_tokens_per_s"]
    b, o = sides["baseline"], sides["openmind"]
    ratios = {
        "sft_samples_per_s": o["sft_samples_per_s"] / b["sft_samples_per_s"],
        "sft_tokens_per_s": o["sft_tokens_per_s"] / b["sft_tokens_per_s"],
        "peak_rss": o["sft_peak_rss_mib"] / b["sft_peak_rss_mib"],
        "mfu": o["sft_mfu"] / b["sft_mfu"],
        "decode_tokens_per_s": o["decode_tokens_per_s"] / b["decode_tokens_per_s"],
        "decode_tokens_per_s_tuned": o["decode_tokens_per_s"] / decode["baseline_tuned"]["decode_tokens_per_s"],
        "ttft": o["ttft_s"] / b["ttft_s"],
        "ttft_tuned": o["ttft_s"] / decode["baseline_tuned"]["ttft_s"],
        "collate_samples_per_s": o["collate"]["packed"]["samples_per_s"] / b["collate"]["padded"]["samples_per_s"],
        "decode_tokens_per_s_stock_generate": o["stock_generate_decode_tokens_per_s"] / b["decode_tokens_per_s"],
        "ttft_stock_generate": o["stock_generate_ttft_s"] / b["ttft_s"],
        "openmind_mfu": o["sft_mfu"],
    }
    collate_b, collate_o = b["collate"]["padded"], o["collate"]["packed"]
    if "samples_per_cpu_s" in collate_b and "samples_per_cpu_s" in collate_o:
        ratios["collate_samples_per_cpu_s"] = collate_o["samples_per_cpu_s"] / collate_b["samples_per_cpu_s"]
    if o["sft_mfu_per_cpu_s"] is not None:
        ratios["openmind_mfu_per_cpu_s"] = o["sft_mfu_per_cpu_s"]
    if "baseline_tuned" in sides:
        t = sides["baseline_tuned"]
        ratios["sft_samples_per_s_tuned"] = o["sft_samples_per_s"] / t["sft_samples_per_s"]
        ratios["peak_rss_tuned"] = o["sft_peak_rss_mib"] / t["sft_peak_rss_mib"]
    if "openmind_batch" in decode:
        ratios["decode_tokens_per_s_batch_tuned"] = (
            decode["openmind_batch"]["decode_tokens_per_s"] / decode["baseline_tuned_batch"]["decode_tokens_per_s"]
        )
    met = {k: (ratios[k] >= v if op == ">=" else ratios[k] <= v) for k, (op, v) in TARGETS.items() if k in ratios}
    gen = raw["generate"]
    same_tokens = all(runs[0]["generated_ids"] == gen["baseline"][0]["generated_ids"] for runs in gen.values())
    steps = raw["steps"][0] if raw.get("steps") else None
    return {"sides": sides, "decode": decode, "ratios": ratios, "trainer_steps": steps,
            "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()}, "targets_met": met,
            "same_greedy_tokens": same_tokens}  # fmt: skip


def markdown(report: dict) -> str:
    summary = report["summary"]
    s, r, d = summary["sides"], report["ratios"], summary["decode"]
    b, o = s["baseline"], s["openmind"]
    t = s.get("baseline_tuned", {})
    targets, met = summary["targets"], summary["targets_met"]

    def fmt(value, spec):
        return spec.format(value) if value is not None else "-"

    def row(name, spec, base, tuned, om, key=None, tuned_key=None):
        cells = [name, fmt(base, spec), fmt(tuned, spec), fmt(om, spec)]
        for k in (key, tuned_key):
            cells.append(f"{r[k]:.2f}" if k in r else "")
        keys = [k for k in (key, tuned_key) if k in targets]
        cells.append(" / ".join(targets[k] for k in keys))
        cells.append(" / ".join({True: "yes", False: "NO"}[met[k]] for k in keys if k in met))
        return "| " + " | ".join(cells) + " |"

    def mfu(side):
        return 100 * side["sft_mfu"] if side else None

    bt, om1 = d["baseline_tuned"], d["openmind"]
    lines = [
        f"Config `{report['config']['name']}` - {report['date']} - {report['hardware']['cpu']} - "
        f"{report['settings']['threads']} thread(s) per process - {report['settings']['repeats']} interleaved SFT "
        f"repeats, {report['settings']['gen_runs']} generate runs - load average at start "
        f"{', '.join(f'{x:.1f}' for x in report['hardware']['load_average_at_start'])}",
        "",
        "| Metric | LLaVA + TRL stock | LLaVA + TRL tuned | OpenMind | OM / stock | OM / tuned | Target | Met |",
        "|---|---|---|---|---|---|---|---|",
        row("SFT samples/s", "{:.2f}", b["sft_samples_per_s"], t.get("sft_samples_per_s"), o["sft_samples_per_s"],
            "sft_samples_per_s", "sft_samples_per_s_tuned"),
        row("SFT peak RSS (MiB)", "{:.0f}", b["sft_peak_rss_mib"], t.get("sft_peak_rss_mib"), o["sft_peak_rss_mib"],
            "peak_rss", "peak_rss_tuned"),
        row("SFT MFU (vs measured fp32 matmul peak)", "{:.1f}%", mfu(b), mfu(t), mfu(o), None, "openmind_mfu"),
        row("SFT MFU per CPU-second given (shared machine)", "{:.1f}%",
            100 * b["sft_mfu_per_cpu_s"] if b["sft_mfu_per_cpu_s"] else None,
            100 * t["sft_mfu_per_cpu_s"] if t.get("sft_mfu_per_cpu_s") else None,
            100 * o["sft_mfu_per_cpu_s"] if o["sft_mfu_per_cpu_s"] else None),
        row("SFT padding (share of positions)", "{:.1f}%", 100 * b["sft_padding_fraction"],
            100 * t["sft_padding_fraction"] if t else None, 100 * o["sft_padding_fraction"]),
        row("Decode tokens/s, batch 1", "{:.1f}", d["baseline"]["decode_tokens_per_s"], bt["decode_tokens_per_s"],
            om1["decode_tokens_per_s"], "decode_tokens_per_s", "decode_tokens_per_s_tuned"),
        row("TTFT (ms), batch 1", "{:.1f}", 1000 * d["baseline"]["ttft_s"], 1000 * bt["ttft_s"], 1000 * om1["ttft_s"],
            "ttft", "ttft_tuned"),
        row("Decode tokens/s, OpenMind with stock generate()", "{:.1f}", d["baseline"]["decode_tokens_per_s"], None,
            d["openmind_stock_generate"]["decode_tokens_per_s"], "decode_tokens_per_s_stock_generate"),
        row("Processor + collator samples/s", "{:.0f}", b["collate"]["padded"]["samples_per_s"], None,
            o["collate"]["packed"]["samples_per_s"], "collate_samples_per_s"),
    ]  # fmt: skip
    if "openmind_batch" in d:
        bb, ob = d["baseline_tuned_batch"], d["openmind_batch"]
        lines.append(row(f"Decode tokens/s, batch {ob['batch']}", "{:.1f}", None, bb["decode_tokens_per_s"],
                         ob["decode_tokens_per_s"], None, "decode_tokens_per_s_batch_tuned"))  # fmt: skip
    bw = report["matmul_peak"]["memory_bandwidth"]
    lines += [
        "",
        "Decode against the memory limit (bytes a step must read: LM body + head weights + live KV cache; "
        f"measured bandwidth, 1 GiB arrays: copy {bw['copy_bytes_per_s'] / 1e9:.1f} GB/s, read "
        f"{bw['read_bytes_per_s'] / 1e9:.1f} GB/s; 64 MiB read {bw['by_size_mib']['64']['read_bytes_per_s'] / 1e9:.1f}"
        " GB/s):",
        "",
        "| Variant | batch | tokens/s | MB read / token | GB/s read | share of copy BW | share of read BW | "
        "share of 64 MiB read BW | share of read BW per CPU-s | step CPU (ms) | compiled step (ms) | "
        "generate() loop (ms / step) | read floor (ms / step) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, v in d.items():
        ms = [f"{1000 * v[k]:.2f}" if k in v else "-" for k in ("compiled_step_s", "generate_loop_s_per_step",
                                                                 "bandwidth_floor_s")]  # fmt: skip
        lines.append(
            f"| {label} | {v['batch']} | {v['decode_tokens_per_s']:.1f} | {v['bytes_per_token'] / 1e6:.1f} | "
            f"{v['bytes_per_s'] / 1e9:.2f} | {100 * v['share_of_copy_bandwidth']:.0f}% | "
            f"{100 * v['share_of_read_bandwidth']:.0f}% | {100 * v.get('share_of_64mib_read_bandwidth', 0):.0f}% | "
            f"{100 * v.get('share_of_read_bandwidth_per_cpu_s', 0):.0f}% | {1000 * v.get('decode_step_cpu_s', 0):.2f} | "
            + " | ".join(ms)
            + " |"
        )
    steps = summary.get("trainer_steps")
    peak = report["matmul_peak"]
    lines += [
        "",
        f"Matmul peak: fp32 {peak['flops_per_s'] / 1e9:.1f} GFLOP/s, bf16 {peak['bf16']['flops_per_s'] / 1e9:.1f} "
        f"GFLOP/s (CPU flags: {', '.join(peak.get('cpu_flags', [])) or 'n/a'}). Gate: logits max |diff| "
        f"{report['gate']['logits_max_abs_diff']:.1e}, loss rel diff {report['gate']['loss_rel_diff']:.1e}. "
        f"Same greedy tokens on every generate variant: {summary['same_greedy_tokens']}.",
    ]
    if steps:
        lines.append(
            f"Tiny preset (demo SFT stage, batch {steps['batch_size']}): {steps['trainer_steps_per_s']:.2f} optimizer "
            f"steps/s through the trainer, {steps['bare_steps_per_s']:.2f} in a bare loop on the same batches "
            f"(overhead {1000 * steps['overhead_s_per_step']:.0f} ms/step, {100 * steps['overhead_share']:.0f}% of a step)."
        )
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
    parser.add_argument("--gen-batch", type=int, default=8, help="the second decode batch size (0: batch 1 only)")
    parser.add_argument("--no-sft-tuned", action="store_true", help="skip TRL with torch_compile (slow to compile)")
    parser.add_argument("--from-raw", default=None, help="a report JSON: recompute its summary from its raw runs")
    parser.add_argument("--trainer-steps", type=int, default=30, help="timed steps of the tiny-preset step task")
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.repeats = args.repeats or (1 if smoke else 3)
    args.gen_runs = args.gen_runs or (1 if smoke else 3)
    args.sft_steps = args.sft_steps or (1 if smoke else 3)
    args.new_tokens = args.new_tokens or (8 if smoke else 64)
    args.gen_repeats = args.gen_repeats or (2 if smoke else 15)
    if smoke:
        args.trainer_steps = min(args.trainer_steps, 3)
    return args


def finish(report: dict, raw: dict, output: Path) -> None:
    """Summary, ratios and markdown from the raw runs; writes `output` (JSON) and its `.md`."""
    peak = max(raw["peak"], key=lambda p: p["flops_per_s"])
    # Bandwidth: the best of the two peak runs too (both are lower bounds of what the machine can do).
    peak["memory_bandwidth"] = max((p["memory_bandwidth"] for p in raw["peak"]), key=lambda m: m["read_bytes_per_s"])
    report["matmul_peak"] = peak
    summary = summarise(raw, peak)
    report["summary"] = summary
    report["ratios"] = summary["ratios"]
    report["raw"] = raw
    table = markdown(report)
    report["markdown"] = table
    output.write_text(json.dumps(report, indent=2))
    output.with_suffix(".md").write_text(table + "\n")
    print("\n" + table)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_raw:  # re-summarise a finished run (its raw runs are kept in its JSON)
        report = json.loads(Path(args.from_raw).read_text())
        finish(report, report["raw"], Path(args.output))
        print(f"\nwrote {args.output} from the raw runs of {args.from_raw}")
        return 0
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
    sft_variants = {"baseline": ("baseline", sft_extra), "openmind": ("openmind", openmind_sft)}
    if not args.no_sft_tuned:
        sft_variants["baseline_tuned"] = ("baseline", [*sft_extra, "--tuned"])
    raw["sft"] = interleaved("sft", args, args.repeats, sft_variants, first_only=["--count-executed"])
    # OpenMind decodes with a static cache and a compiled decode step; so does the tuned baseline (transformers' own
    # switches); the stock columns show what that buys each side.
    gen_variants = {
        "baseline": ("baseline", gen_extra),
        "baseline_tuned": ("baseline", [*gen_extra, "--tuned"]),
        "openmind": ("openmind", gen_extra),
        "openmind_stock_generate": ("openmind", [*gen_extra, "--no-fast-decode"]),
    }
    if args.gen_batch > 1:
        batch = ["--gen-batch", str(args.gen_batch)]
        gen_variants["baseline_tuned_batch"] = ("baseline", [*gen_extra, "--tuned", *batch])
        gen_variants["openmind_batch"] = ("openmind", [*gen_extra, *batch])
    raw["generate"] = interleaved("generate", args, args.gen_runs, gen_variants)
    raw["steps"] = [run_worker("steps", "openmind", args, ["--warmup", "3", "--steps", str(args.trainer_steps)])]
    raw["peak"].append(run_worker("peak", "openmind", args))

    # The raw runs first: a failure while summarising must not lose them (`--from-raw` re-summarises the file).
    report["wall_seconds"] = time.perf_counter() - wall_start
    output.write_text(json.dumps({**report, "raw": raw}, indent=2))
    finish(report, raw, output)
    print(f"\nwrote {output} and {output.with_suffix('.md')} in {report['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
