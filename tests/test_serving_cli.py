"""`openmind serve` as users run it: a subprocess serving the tiny preset checkpoint on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from openmind_hf.cli import build_parser, main

KEY = "cli-test-key"
MARKER = "SECRETMARKER"
SRC = str(Path(__file__).resolve().parents[1] / "src")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def non_loopback_ipv4() -> str | None:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    return None


def start_server(checkpoint, port, *extra):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "OPENMIND_API_KEY": KEY}
    command = [
        sys.executable,
        "-m",
        "openmind_hf.cli",
        "serve",
        "--model",
        str(checkpoint),
        "--port",
        str(port),
        *extra,
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    process.lines = []  # read continuously, so the pipe never fills and tests can wait for log lines
    threading.Thread(target=lambda: process.lines.extend(iter(process.stdout.readline, "")), daemon=True).start()
    return process


def wait_for(process, ready, what: str, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{''.join(process.lines)[-3000:]}")
        if ready():
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen in time:\n{''.join(process.lines)[-3000:]}")


def healthy(port) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def stop(process) -> str:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    time.sleep(0.2)  # let the reader thread drain the pipe
    return "".join(process.lines)


def test_defaults_bind_loopback_and_read_the_key_from_the_environment():
    args = build_parser(["serve", "--model", "x"]).parse_args(["serve", "--model", "x"])
    assert args.host == "127.0.0.1" and args.api_key_env == "OPENMIND_API_KEY" and args.workers == 1


def test_refuses_to_start_without_a_key(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("OPENMIND_API_KEY", raising=False)
    assert main(["serve", "--model", str(tmp_path)]) == 2
    assert "no API key" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path), "--no-api-key", "--host", "0.0.0.0"]) == 2
    assert "only allowed on loopback" in capsys.readouterr().err


def test_serve_one_worker_default_bind(tiny_checkpoint):
    port = free_port()
    process = start_server(tiny_checkpoint, port, "--max-concurrent", "2")
    try:
        wait_for(process, lambda: healthy(port), "startup")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=60)
        name = Path(tiny_checkpoint).name
        assert [m.id for m in client.models.list().data] == [name]
        reply = client.chat.completions.create(
            model=name, messages=[{"role": "user", "content": f"hi {MARKER}"}], max_tokens=5
        )
        assert reply.choices[0].finish_reason in ("stop", "length") and reply.usage.prompt_tokens > 0
        address = non_loopback_ipv4()
        if address is not None:  # the default bind must not be reachable from other interfaces
            with pytest.raises(OSError):
                socket.create_connection((address, port), timeout=2).close()
    finally:
        output = stop(process)
    assert "POST /v1/chat/completions 200" in output  # the access log line
    assert MARKER not in output and KEY not in output


@pytest.mark.slow  # two processes each import torch + transformers: ~15 s idle, ~40 s on a busy 2-core machine
def test_serve_two_workers(tiny_checkpoint):
    port = free_port()
    process = start_server(tiny_checkpoint, port, "--workers", "2", "--served-model-name", "tiny")
    try:
        started = lambda: "".join(process.lines).count("Application startup complete") == 2  # noqa: E731
        wait_for(process, started, "two workers starting")
        assert healthy(port)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=60)
        for _ in range(4):
            stream = client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True
            )
            assert [c.choices[0].finish_reason for c in stream if c.choices][-1] in ("stop", "length")
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
    finally:
        output = stop(process)
    assert output.count("POST /v1/chat/completions 200") == 4, output[-2000:]
