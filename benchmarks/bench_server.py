"""Load test of `openmind serve` on loopback: latency percentiles, time to first token, throughput, RSS drift.

    PYTHONPATH=src python benchmarks/bench_server.py --output benchmarks/results/server.json
    PYTHONPATH=src python benchmarks/bench_server.py --model DIR --concurrency 8 --duration 30 --max-requests 200
    # side by side with vLLM (its own venv, `make test-vllm` builds it); same checkpoint, same load:
    PYTHONPATH=src python benchmarks/bench_server.py --vllm-compatible-preset DIR   # build the checkpoint once
    PYTHONPATH=src python benchmarks/bench_server.py --model DIR --output benchmarks/results/server_openmind.json
    PYTHONPATH=src .venv-vllm/bin/python benchmarks/bench_server.py --engine vllm --model DIR \
        --output benchmarks/results/server_vllm.json

`--engine vllm` runs `openmind serve --engine vllm` (vLLM's OpenAI server, continuous batching, CPU eager mode) in
place of OpenMind's server; the requests, the clients and the measurements are the same. RSS counts the server
process and its children (vLLM runs its engine in a child process).

Starts `openmind serve` in a subprocess on 127.0.0.1 (the tiny preset unless `--model` is given), warms it up,
then keeps `--concurrency` clients busy until `--duration` seconds or `--max-requests` requests, whichever comes
first. The mix is fixed: every other request streams (time to first token is measured on those), every fourth
carries a 64x64 PNG, and each asks for exactly `--max-tokens` tokens (`min_tokens` too), so runs are comparable.
RSS of the server process is sampled every 0.5 s; "drift" is the RSS at the end minus the RSS after warm-up.
Bounded on purpose: this runs on shared CI machines, and only ever against 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import io
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
KEY = "bench-server-key"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def image_data_uri() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 120, 200)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def start_server(model: str, port: int, args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OPENMIND_API_KEY": KEY}
    env.setdefault("OMP_NUM_THREADS", str(args.threads))
    command = [
        sys.executable, "-m", "openmind_hf.cli", "serve", "--model", model, "--served-model-name", "bench",
        "--host", HOST, "--port", str(port), "--max-concurrent", str(args.concurrency),
        "--generation-workers", str(args.generation_workers), "--log-level", "warning",
    ]  # fmt: skip
    if args.engine == "vllm":
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache; vLLM's default (4) is far more than needed
        command += ["--engine", "vllm", "--device", "cpu", "--dtype", "float32"]
    # stderr to a file: vLLM logs a lot, and an unread pipe would block it
    log = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
    process.log = log
    return process


def wait_healthy(process: subprocess.Popen, url: str, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            process.log.seek(0)
            raise RuntimeError(f"server exited early:\n{process.log.read()[-3000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server did not become healthy in time")


class RssSampler:
    """Samples the resident set size of one process every `interval` seconds on a thread."""

    def __init__(self, pid: int, interval: float = 0.5):
        import psutil

        self.process, self.interval = psutil.Process(pid), interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        import psutil

        total = self.process.memory_info().rss
        for child in self.process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def _run(self):
        while not self._stop.wait(self.interval):
            self.samples.append((time.monotonic(), self.rss()))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def request_body(index: int, args, image: str) -> dict:
    content: list = [{"type": "text", "text": f"Request {index}: describe the scene in a few words."}]
    if index % 4 == 3:
        content.insert(0, {"type": "image_url", "image_url": {"url": image}})
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": args.max_tokens,
        "min_tokens": args.max_tokens,
        "temperature": 0.7,
        "seed": index,
    }
    if index % 2 == 1:
        body["stream"] = True
    return body


def _first_content(line: str) -> bool:
    """Whether a server-sent line carries answer text (not the role-only first chunk, whatever the JSON spacing)."""
    if not line.startswith("data: ") or line == "data: [DONE]":
        return False
    choices = json.loads(line[len("data: ") :]).get("choices") or [{}]
    return bool(choices[0].get("delta", {}).get("content"))


async def one_request(client, url: str, body: dict) -> dict:
    started = time.perf_counter()
    record = {"stream": bool(body.get("stream")), "image": len(body["messages"][0]["content"]) > 1}
    if body.get("stream"):
        first = None
        async with client.stream("POST", url, json=body) as response:
            record["status"] = response.status_code
            async for line in response.aiter_lines():
                if first is None and _first_content(line):
                    first = time.perf_counter() - started
        record["ttft_s"] = first
    else:
        response = await client.post(url, json=body)
        record["status"] = response.status_code
        if response.status_code == 200:
            record["completion_tokens"] = response.json()["usage"]["completion_tokens"]
    record["latency_s"] = time.perf_counter() - started
    return record


async def load(base_url: str, args, image: str, count_from: int = 0, limit: int | None = None, duration=None):
    import httpx

    url = base_url + "/v1/chat/completions"
    records: list[dict] = []
    counter = iter(range(count_from, count_from + (limit or args.max_requests)))
    deadline = time.monotonic() + (duration or args.duration)

    async def client_loop(client):
        while time.monotonic() < deadline:
            index = next(counter, None)
            if index is None:
                return
            try:
                records.append(await one_request(client, url, request_body(index, args, image)))
            except httpx.HTTPError as err:
                records.append({"status": type(err).__name__, "latency_s": None})

    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=args.concurrency + 2)
    async with httpx.AsyncClient(headers=headers, timeout=120, limits=limits) as client:
        started = time.monotonic()
        await asyncio.gather(*(client_loop(client) for _ in range(args.concurrency)))
        elapsed = time.monotonic() - started
    return records, elapsed


def summarise(records: list[dict], elapsed: float, args) -> dict:
    ok = [r for r in records if r["status"] == 200]
    latencies = [r["latency_s"] for r in ok]
    ttfts = [r["ttft_s"] for r in ok if r.get("ttft_s") is not None]
    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1

    def stats(values):
        return {
            "p50": percentile(values, 50),
            "p90": percentile(values, 90),
            "p99": percentile(values, 99),
            "max": max(values) if values else None,
            "mean": statistics.fmean(values) if values else None,
        }

    return {
        "requests": len(records),
        "ok": len(ok),
        "statuses": statuses,
        "elapsed_s": elapsed,
        "requests_per_s": len(ok) / elapsed if elapsed else None,
        "generated_tokens_per_s": len(ok) * args.max_tokens / elapsed if elapsed else None,
        # from the non-streamed replies' usage: shows that every server generated exactly --max-tokens
        "completion_tokens": sorted({r["completion_tokens"] for r in ok if "completion_tokens" in r}),
        "latency_s": stats(latencies),
        "latency_s_by_kind": {
            "text": stats([r["latency_s"] for r in ok if not r["image"]]),
            "image": stats([r["latency_s"] for r in ok if r["image"]]),
        },
        "ttft_s": stats(ttfts),
    }


def build_vllm_compatible_preset(path: str) -> None:
    """The tiny preset with 2 attention heads of 32 (vLLM's CPU attention has no 16-wide kernel) and no SigLIP
    pooling head (unused by OpenMind; vLLM's layer swap breaks its nn.MultiheadAttention). Random weights."""
    sys.path.insert(0, str(REPO_ROOT / "src"))
    from openmind_hf.building.presets import build_tiny_preset, tiny_config

    base = tiny_config()
    text = {**base.text_config.to_dict(), "num_attention_heads": 2, "num_key_value_heads": 1}
    vision = {**base.vision_config.to_dict(), "vision_use_head": False}
    build_tiny_preset(path, seed=0, text_config=text, vision_config=vision)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="checkpoint to serve (default: the tiny preset, built in a temp dir)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (at most 30 by default)")
    parser.add_argument("--max-requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--generation-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="OMP threads of the server process")
    parser.add_argument("--engine", default="openmind", choices=["openmind", "vllm"], help="the server under load")
    parser.add_argument(
        "--vllm-compatible-preset",
        metavar="DIR",
        help="only build the tiny preset with 32-wide attention heads (vLLM's CPU kernels need >= 32) into DIR",
    )
    parser.add_argument("--warmup", type=int, default=8, help="requests before measuring (and before RSS baseline)")
    parser.add_argument("--output", default=str(REPO_ROOT / "benchmarks" / "results" / "server.json"))
    args = parser.parse_args(argv)
    if args.vllm_compatible_preset:
        build_vllm_compatible_preset(args.vllm_compatible_preset)
        print(f"wrote {args.vllm_compatible_preset}")
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-server-") as workdir:
        model = args.model
        if model is None:
            sys.path.insert(0, str(REPO_ROOT / "src"))
            from openmind_hf import build_tiny_preset

            model = str(Path(workdir) / "tiny")
            if args.engine == "vllm":
                build_vllm_compatible_preset(model)
            else:
                build_tiny_preset(model, seed=0)
        port = free_port()
        base_url = f"http://{HOST}:{port}"
        process = start_server(model, port, args)
        try:
            wait_healthy(process, base_url, timeout=180.0 if args.engine == "openmind" else 900.0)
            image = image_data_uri()
            asyncio.run(load(base_url, args, image, count_from=10**6, limit=args.warmup, duration=120))
            with RssSampler(process.pid) as sampler:
                rss_start = sampler.rss()
                records, elapsed = asyncio.run(load(base_url, args, image))
                rss_end = sampler.rss()
            peak = max([rss_end, rss_start, *(rss for _, rss in sampler.samples)])
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    mib = 1024 * 1024
    report = {
        "benchmark": "bench_server",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": {**vars(args), "model": args.model or "tiny preset (random init)", "host": HOST},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        **summarise(records, elapsed, args),
        "rss_mib": {
            "after_warmup": rss_start / mib,
            "end": rss_end / mib,
            "drift": (rss_end - rss_start) / mib,
            "peak": peak / mib,
        },
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    latency, ttft = report["latency_s"], report["ttft_s"]

    def ms(value):
        return "n/a" if value is None else f"{value * 1000:.0f} ms"

    print(
        f"{report['ok']}/{report['requests']} ok in {elapsed:.1f} s ({report['requests_per_s']:.1f} req/s); "
        f"latency p50 {ms(latency['p50'])} p99 {ms(latency['p99'])}; TTFT p50 {ms(ttft['p50'])} "
        f"p99 {ms(ttft['p99'])}; RSS {rss_start / mib:.0f} -> {rss_end / mib:.0f} MiB "
        f"(drift {(rss_end - rss_start) / mib:+.1f} MiB); wrote {output}"
    )
    return 0 if report["ok"] == report["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
