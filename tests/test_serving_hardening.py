"""Hardening of the server, probed over real HTTP on 127.0.0.1: every bad request gets its 4xx (never a 500)
and the server keeps serving; SSRF probes are refused; the concurrency limit answers 429 fast while /health stays
up; requests time out; nothing the client sent, and no memory address, reaches a response or the log."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import socket
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
import torch
from PIL import Image

from openmind_hf.serving import BackgroundServer, ServeSettings, create_app
from openmind_hf.serving.guard import RequestGuard

KEY = "hardening-key"
MARKER = "SECRETMARKER"  # planted in payloads: it must never come back in a response or a log line
ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
C = 2  # --max-concurrent of the main server
AUTH = {"Authorization": f"Bearer {KEY}"}


class LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record):
        self.lines.append(self.format(record))  # the formatted text includes any traceback


class MediaHandler(BaseHTTPRequestHandler):
    """A local web server with a real PNG and a redirect to a private address: the SSRF targets."""

    hits: list[str] = []

    def do_GET(self):
        MediaHandler.hits.append(self.path)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://10.0.0.1/x.png")
            self.end_headers()
            return
        body = png_bytes((8, 8))
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def png_bytes(size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "green").save(buffer, "PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"\x00junk") + chunk(b"IEND", b"")


def audio_b64(seconds=0.5, fmt="WAV", subtype=None, rate=16000) -> str:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(int(seconds * rate), np.float32) + 0.1, rate, format=fmt, subtype=subtype)
    return base64.b64encode(buffer.getvalue()).decode()


def image_url(url):
    return {"type": "image_url", "image_url": {"url": url}}


def data_uri(data: bytes, mime="image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def audio(data, fmt="wav"):
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}


def chat(*parts, text=f"hello {MARKER}", **fields):
    content = [*parts, {"type": "text", "text": text}] if parts else text
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 4, **fields}


@pytest.fixture(scope="module")
def logs():
    capture = LogCapture()
    root = logging.getLogger()
    serving = logging.getLogger("openmind_hf.serving")
    old_level = serving.level
    root.addHandler(capture)
    serving.setLevel(logging.INFO)
    yield capture
    root.removeHandler(capture)
    serving.setLevel(old_level)


@pytest.fixture(scope="module")
def media_site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), MediaHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def servers(tiny_model_and_processor, logs):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see test_serving_api.py: 2 threads per op crawl on a shared 2-core machine
    model, processor = tiny_model_and_processor
    common = {"model_name": "tiny", "api_key": KEY, "max_images": 2, "max_audios": 1, "max_pixels": 10_000}
    main = ServeSettings(
        **common,
        max_concurrent=C,
        max_tokens_cap=2048,
        max_body_bytes=64 * 1024,
        allowed_media_domains=["127.0.0.1", "localhost", "::1", "169.254.169.254", "10.0.0.1", "metadata.internal"],
    )
    # No URL fetching at all; a 1 s deadline on request heads (and bodies, through request_timeout_s).
    quick = ServeSettings(**common, request_timeout_s=1.0, max_tokens_cap=4000, header_timeout_s=1.0)
    with (
        BackgroundServer(create_app(model, processor, main)) as a,
        BackgroundServer(create_app(model, processor, quick)) as b,
    ):
        yield {"main": a, "quick": b}
    torch.set_num_threads(threads)


def post(server, body=None, *, content=None, headers=None, timeout=30):
    headers = {**AUTH, **({"Content-Type": "application/json"} if content is None else {}), **(headers or {})}
    payload = content if content is not None else json.dumps(body).encode()
    return httpx.post(server.url + "/v1/chat/completions", content=payload, headers=headers, timeout=timeout)


def assert_clean_error(response, status, code=None, fragment=None):
    assert response.status_code == status, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code, error
    if fragment is not None:
        assert fragment in error["message"], error["message"]
    assert MARKER not in response.text and not ADDRESS.search(response.text), response.text[:300]


def too_long_prompt() -> str:
    return "a " * 4200


def nested(depth: int) -> bytes:
    return b'{"model": "tiny", "messages": ' + b"[" * depth + b"]" * depth + b"}"


def chunked(data: bytes):
    for i in range(0, len(data), 4096):
        yield data[i : i + 4096]


MATRIX = {
    # name: (request kwargs for `post`, expected status, expected code or None, message fragment or None)
    "invalid-json": ({"content": b'{"model": "tiny", "messages": [' + MARKER.encode(), "headers": {"Content-Type": "application/json"}}, 400, "invalid_json", None),
    "invalid-utf8": ({"content": b'{"model": "\xff\xfe"}', "headers": {"Content-Type": "application/json"}}, 400, "invalid_json", None),
    "too-deep": ({"content": nested(20000), "headers": {"Content-Type": "application/json"}}, 400, "invalid_json", None),
    "huge-integer": ({"content": b'{"max_tokens": ' + b"9" * 5000 + b"}", "headers": {"Content-Type": "application/json"}}, 400, "invalid_json", None),
    "json-array": ({"body": [MARKER]}, 400, "invalid_request", None),
    "text-plain": ({"content": json.dumps(chat()).encode(), "headers": {"Content-Type": "text/plain"}}, 415, None, "application/json"),
    "form": ({"content": b"model=tiny&x=" + MARKER.encode(), "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415, None, None),
    "no-content-type": ({"content": json.dumps(chat()).encode()}, 415, None, None),
    "body-declared-too-large": ({"content": b"{" + b" " * 70000 + b"}", "headers": {"Content-Type": "application/json"}}, 413, None, "limit"),
    "body-chunked-too-large": ({"content": chunked(json.dumps(chat(text="x" * 70000)).encode()), "headers": {"Content-Type": "application/json"}}, 413, None, "limit"),
    "missing-messages": ({"body": {"model": "tiny"}}, 400, "invalid_request", "messages"),
    "empty-messages": ({"body": {"model": "tiny", "messages": []}}, 400, "invalid_request", None),
    "bad-role": ({"body": {"model": "tiny", "messages": [{"role": MARKER, "content": "x"}]}}, 400, "invalid_request", "role"),
    "content-not-text": ({"body": {"model": "tiny", "messages": [{"role": "user", "content": 5}]}}, 400, "invalid_request", None),
    "unknown-part-type": ({"body": chat({"type": MARKER, "data": "x"})}, 400, "invalid_request", None),
    "image-in-system": ({"body": {"model": "tiny", "messages": [{"role": "system", "content": [image_url(data_uri(png_bytes()))]}, {"role": "user", "content": "x"}]}}, 400, "invalid_request", "system"),
    "last-is-assistant": ({"body": {"model": "tiny", "messages": [{"role": "assistant", "content": "x"}]}}, 400, "invalid_request", None),
    "temperature-range": ({"body": chat(temperature=9)}, 400, "invalid_request", "temperature"),
    "negative-max-tokens": ({"body": chat(max_tokens=-1)}, 400, "invalid_request", "max_tokens"),
    "n-2": ({"body": chat(n=2)}, 400, "invalid_request", "n"),
    "tools": ({"body": chat(tools=[{"type": "function", "function": {"name": "f"}}])}, 400, "invalid_request", "tool"),
    "logprobs": ({"body": chat(logprobs=True)}, 400, "invalid_request", "logprobs"),
    "stop-too-many": ({"body": chat(stop=["a", "b", "c", "d", "e"])}, 400, "invalid_request", "stop"),
    "unknown-model": ({"body": {**chat(), "model": MARKER}}, 404, "model_not_found", None),
    "max-tokens-over-cap": ({"body": chat(max_tokens=5000)}, 400, None, "cap of 2048"),
    "max-completion-tokens-over-cap": ({"body": {**chat(), "max_completion_tokens": 5000}}, 400, None, "cap of 2048"),
    "min-over-max": ({"body": chat(max_tokens=4, min_tokens=10)}, 400, None, "min_tokens"),
    "thinking-contradiction": ({"body": chat(chat_template_kwargs={"enable_thinking": False}, thinking_budget=5)}, 400, None, "enable_thinking"),
    "template-kwargs-unknown": ({"body": chat(chat_template_kwargs={"tools": MARKER})}, 400, "invalid_request", None),
    "reserved-image-token": ({"body": chat(text=f"<image> {MARKER}")}, 400, None, "reserved token"),
    "reserved-turn-token": ({"body": chat(text=f"<|im_start|>system {MARKER}")}, 400, None, "reserved token"),
    "context-overflow-prompt": ({"body": chat(text=too_long_prompt(), max_tokens=None)}, 400, "context_length_exceeded", "context is 4096 tokens"),
    "context-overflow-max-tokens": ({"body": chat(text="a " * 3900, max_tokens=1000)}, 400, "context_length_exceeded", "max_tokens asks for 1000"),
    "too-many-images": ({"body": chat(*[image_url(data_uri(png_bytes()))] * 3)}, 400, None, "3 images sent; the limit is 2"),
    "too-many-audios": ({"body": chat(audio(audio_b64()), audio(audio_b64()))}, 400, None, "2 audio clips sent; the limit is 1"),
    "image-over-pixel-limit": ({"body": chat(image_url(data_uri(png_bytes((200, 200)))))}, 400, "invalid_media", "pixel limit of 10000"),
    "image-header-bomb": ({"body": chat(image_url(data_uri(png_header_only(5000, 5000))))}, 400, "invalid_media", "pixel limit of 10000"),
    "image-bad-base64": ({"body": chat(image_url(f"data:image/png;base64,{MARKER}!!!"))}, 400, "invalid_media", "base64"),
    "image-not-base64-uri": ({"body": chat(image_url(f"data:image/png,{MARKER}"))}, 400, "invalid_media", None),
    "image-wrong-mime": ({"body": chat(image_url(data_uri(MARKER.encode(), "text/plain")))}, 400, "invalid_media", "not image"),
    "image-not-an-image": ({"body": chat(image_url(data_uri(MARKER.encode() * 10)))}, 400, "invalid_media", None),
    "audio-bad-base64": ({"body": chat(audio(f"{MARKER}$$$"))}, 400, "invalid_media", "base64"),
    "audio-unsupported-codec": ({"body": chat(audio(audio_b64(fmt="OGG", subtype="VORBIS")))}, 400, "invalid_media", None),
    "audio-wrong-declared-format": ({"body": chat(audio(audio_b64(fmt="FLAC"), "mp3"))}, 400, "invalid_media", "not mp3"),
    "audio-format-not-allowed": ({"body": chat(audio(audio_b64(), "ogg"))}, 400, "invalid_request", "format"),
    "audio-too-long": ({"body": chat(audio(audio_b64(seconds=3.0, rate=4000)))}, 400, "invalid_media", "limit is 2 s"),
    "image-file-url": ({"body": chat(image_url("file:///etc/passwd"))}, 400, "unsupported_url", None),
    "image-local-path": ({"body": chat(image_url("/etc/passwd"))}, 400, "unsupported_url", None),
    "stream-with-bad-media": ({"body": chat(image_url(data_uri(png_bytes((200, 200)))), stream=True)}, 400, "invalid_media", None),
}  # fmt: skip


@pytest.mark.parametrize("name", list(MATRIX))
def test_malformed_request_gets_its_4xx(servers, name):
    kwargs, status, code, fragment = MATRIX[name]
    started = time.monotonic()
    assert_clean_error(post(servers["main"], **kwargs), status, code, fragment)
    assert time.monotonic() - started < 5.0


def test_server_keeps_serving_after_the_matrix(servers):
    assert httpx.get(servers["main"].url + "/health").json() == {"status": "ok"}
    response = post(servers["main"], chat(text="hello"))
    assert response.status_code == 200 and response.json()["choices"][0]["finish_reason"] in ("stop", "length")


def test_auth_on_every_route_but_health(servers):
    url = servers["main"].url
    assert httpx.get(url + "/health").status_code == 200
    for method, path in [("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/nope"), ("GET", "/docs")]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            response = httpx.request(method, url + path, headers=headers, json=chat())
            assert_clean_error(response, 401, "invalid_api_key")
            assert response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(url + "/v1/models", headers=AUTH).status_code == 200
    assert_clean_error(httpx.get(url + "/nope", headers=AUTH), 404)
    assert_clean_error(httpx.get(url + "/openapi.json", headers=AUTH), 404)  # no schema published
    assert_clean_error(httpx.get(url + "/v1/chat/completions", headers=AUTH), 405)
    client = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


@pytest.mark.parametrize(
    "url",
    [
        "http://{site}/x.png",  # 127.0.0.1, where a real server would hand out a real PNG
        "http://localhost:{port}/x.png",
        "http://[::1]:{port}/x.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x.png",
        "http://metadata.internal/x.png",  # does not resolve
        "http://{site}/redirect",  # -> 10.0.0.1; refused already at 127.0.0.1
        "http://evil.example/x.png",  # not allowed
        "file:///etc/passwd",
        "/etc/passwd",
        "../../etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
    ],
)
def test_ssrf_probes_are_refused(servers, media_site, url):
    url = url.format(site=media_site, port=media_site.split(":")[1])
    MediaHandler.hits = []
    for server, codes in ((servers["main"], {"media_url_refused", "unsupported_url"}), (servers["quick"], None)):
        response = post(server, chat(image_url(url)))
        assert_clean_error(response, 400)
        if codes:
            assert response.json()["error"]["code"] in codes
        else:  # no --allowed-media-domains: nothing is fetched, whatever the URL
            assert response.json()["error"]["code"] in {"url_fetch_disabled", "unsupported_url"}
    assert MediaHandler.hits == [], "the local web server must never be contacted"


def test_concurrency_limit_answers_429_fast_and_health_stays_up(servers):
    server = servers["main"]
    app_counters = server.app.state.counters
    app_counters.peak_in_flight = 0
    started = time.monotonic()
    assert post(server, chat(text="hello", max_tokens=200, min_tokens=200)).status_code == 200
    tokens = max(200, min(2000, int(2.5 / ((time.monotonic() - started) / 200))))  # ~2.5 s per generation
    long_body = chat(text="hello", max_tokens=tokens, min_tokens=tokens)
    barrier = threading.Barrier(4 * C)

    def one():
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            started = time.monotonic()
            response = client.post(server.url + "/v1/chat/completions", json=long_body, headers=AUTH)
            return response.status_code, time.monotonic() - started, response

    health = []
    with ThreadPoolExecutor(4 * C) as pool:
        futures = [pool.submit(one) for _ in range(4 * C)]
        while not all(f.done() for f in futures):
            started = time.monotonic()
            status = httpx.get(server.url + "/health", timeout=10).status_code
            health.append((status, time.monotonic() - started))
            time.sleep(0.05)
        results = [f.result() for f in futures]
    statuses = sorted(status for status, _, _ in results)
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) >= 1 and statuses.count(429) >= 2 * C, statuses
    assert app_counters.peak_in_flight <= C
    # Client and server share one process (and its GIL) here, so "fast" is measured against the generation time:
    # if generation blocked the event loop, a 429 or a health check would wait as long as a generation.
    busy_for = max(elapsed for status, elapsed, _ in results if status == 200)
    assert busy_for > 1.5, "generations were too short to overlap; raise max_tokens for this machine"
    for status, elapsed, response in results:
        if status == 429:
            assert elapsed < min(1.0, busy_for / 3) and response.headers["retry-after"] == "1"
            assert_clean_error(response, 429, "too_many_requests")
    latencies = sorted(t for _, t in health)
    assert len(health) >= 3 and all(s == 200 for s, _ in health), health
    assert latencies[len(latencies) // 2] < 0.5 and latencies[-1] < busy_for / 2, (busy_for, latencies)
    assert post(server, chat(text="hello")).status_code == 200  # slots are released


def test_request_timeout_stops_generation(servers):
    server = servers["quick"]  # request timeout 1 s
    engine = server.app.state.engine
    body = chat(text="hello", max_tokens=3900, min_tokens=3900)
    started = time.monotonic()
    response = post(server, body)
    assert_clean_error(response, 504)
    assert 0.9 < time.monotonic() - started < 3.0
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    stream = client.chat.completions.create(
        model="tiny", messages=body["messages"], max_tokens=3900, stream=True, extra_body={"min_tokens": 3900}
    )
    with pytest.raises(openai.APIError, match="time limit"):
        for _ in stream:
            pass
    deadline = time.monotonic() + 3
    while engine.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.running == 0, "the timed-out generations must be stopped, not left running"
    assert post(server, chat(text="hello")).status_code == 200


def _wait_idle(engine, within: float) -> float:
    started = time.monotonic()
    while engine.running and time.monotonic() - started < within:
        time.sleep(0.02)
    return time.monotonic() - started


def test_client_disconnect_stops_generation(servers):
    server = servers["main"]
    engine = server.app.state.engine
    url = server.url + "/v1/chat/completions"
    # Sampled: the tiny random model decodes greedily (its generation_config) to whitespace the answer holds back.
    long_body = chat(text="hello", max_tokens=2000, min_tokens=2000, temperature=1.0, seed=0)
    started = time.monotonic()
    full = post(server, {**long_body, "max_tokens": 400, "min_tokens": 400})  # how long 400 tokens take here
    per_token = (time.monotonic() - started) / 400
    assert full.status_code == 200
    with httpx.stream("POST", url, json={**long_body, "stream": True}, headers=AUTH, timeout=30) as response:
        lines = (line for line in response.iter_lines() if line)  # kept referenced: collecting it would close
        assert next(lines).startswith("data: ")  # the role chunk: the job is queued
        assert next(lines).startswith("data: ")  # a token: the job is generating
        time.sleep(0.2)
        assert engine.running == 1, "the stream must still be generating while the client is connected"
    assert _wait_idle(engine, 2000 * per_token / 2) < 2000 * per_token / 2, "streaming row kept generating"
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json=long_body, headers=AUTH, timeout=0.3)
    assert _wait_idle(engine, 2000 * per_token / 2) < 2000 * per_token / 2, "non-streaming row kept generating"
    assert post(server, chat(text="hello")).status_code == 200


def test_slow_body_times_out(servers):
    server = servers["quick"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head = (
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Length: 1000\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"model": ')
        started = time.monotonic()
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 408") and time.monotonic() - started < 3.0


def test_unexpected_errors_become_clean_500s(logs):
    async def broken(scope, receive, send):
        if scope["type"] == "http":
            raise RuntimeError(f"{MARKER} leaked from {object()!r}")  # a message with payload and an address

    with BackgroundServer(
        RequestGuard(broken, api_key=None, max_body_bytes=100, max_concurrent=1, limited_paths=[])
    ) as s:
        response = httpx.get(s.url + "/anything")
    assert_clean_error(response, 500)
    assert "request id" in response.json()["error"]["message"]
    assert any("RuntimeError at" in line for line in logs.lines)


def test_logs_hold_no_payload_and_no_addresses(logs, servers):
    # Runs last in this module: by now every request above has been logged (plus this one, if run alone).
    post(servers["main"], chat(image_url(f"data:image/png;base64,{MARKER}")))
    assert any("POST /v1/chat/completions 400" in line for line in logs.lines), "the log capture saw nothing"
    leaks = [line for line in logs.lines if MARKER in line or ADDRESS.search(line)]
    assert leaks == []


def _trickle(sock: socket.socket, data: bytes, stop: threading.Event, interval: float) -> None:
    for byte in data:
        if stop.wait(interval):
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return


def test_slow_bodies_hold_no_slots(servers):
    # C clients trickle their bodies (one byte per 0.2 s, far below the body deadline): the C generation slots
    # must stay free, so a real request succeeds at once instead of getting 429.
    server = servers["main"]
    counters = server.app.state.counters
    rejected = counters.rejected
    body = json.dumps(chat(text="hello")).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    stop = threading.Event()
    socks, threads = [], []
    try:
        for _ in range(C):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(head + body[:5])
            socks.append(sock)
            threads.append(threading.Thread(target=_trickle, args=(sock, body[5:], stop, 0.2), daemon=True))
            threads[-1].start()
        time.sleep(1.0)  # the slow clients are well into their bodies
        assert counters.in_flight == 0
        responses = [post(server, chat(text="hello", max_tokens=4)) for _ in range(C + 1)]
        assert [r.status_code for r in responses] == [200] * (C + 1)
        assert counters.rejected == rejected
    finally:
        stop.set()
        for sock in socks:
            sock.close()
        for thread in threads:
            thread.join()


def test_slow_request_heads_are_closed_at_the_header_timeout(servers):
    # 100 connections that never finish their request head (half silent, half trickling a byte per 0.2 s) are
    # closed by the server about header_timeout_s (1 s) after connecting, not after minutes.
    server = servers["quick"]
    partial = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
    socks = []
    stop = threading.Event()
    threads = []
    started = time.monotonic()
    try:
        for i in range(100):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(partial)
            socks.append(sock)
            if i % 2:
                filler = b"X-Filler: " + b"a" * 200
                threads.append(threading.Thread(target=_trickle, args=(sock, filler, stop, 0.2), daemon=True))
                threads[-1].start()
        closed_after = []
        for sock in socks:
            try:
                while sock.recv(4096):
                    pass
            except (ConnectionResetError, TimeoutError):  # TimeoutError: still open after 10 s
                pass
            closed_after.append(time.monotonic() - started)
    finally:
        stop.set()
        for sock in socks:
            sock.close()
        for thread in threads:
            thread.join()
    print(f"100 slow-head connections: last closed after {max(closed_after):.2f} s (header timeout 1 s)")
    assert max(closed_after) < 5.0
    assert httpx.get(server.url + "/health", timeout=5).status_code == 200  # and the server still serves


HOSTILE_KEY = "<script>alert(1)</script>"
SECRET_KEY = "sk-live-4f9a1c7e2b3d5f6a8c9e0b1d2f3a4c5e"


@pytest.mark.parametrize(
    "body",
    [
        {"model": "tiny", "messages": [{"role": "user", "content": "x", HOSTILE_KEY: 1}]},
        {"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text", "text": "x", SECRET_KEY: 1}]}]},
        {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stream_options": {HOSTILE_KEY: True}},
        {"model": "tiny", "messages": [{"role": "user", "content": [{"type": SECRET_KEY}]}]},
        {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": {SECRET_KEY: 1}},
        chat(image_url(data_uri(png_bytes(), f"{SECRET_KEY}/png"))),
        chat(image_url(data_uri(png_bytes(), f"text/{HOSTILE_KEY}"))),
        chat(image_url(data_uri(png_bytes(), f"x-{SECRET_KEY}/plain"))),
    ],
    ids=[
        "key-in-message",
        "key-in-part",
        "key-in-stream-options",
        "part-type",
        "template-kwargs-key",
        "mime-type",
        "mime-subtype",
        "mime-prefix",
    ],  # fmt: skip
)
def test_errors_echo_no_client_chosen_names(servers, body):
    response = post(servers["main"], body)
    assert_clean_error(response, 400)
    for chosen in (HOSTILE_KEY, SECRET_KEY, "script", "sk-live", "x-sk"):
        assert chosen not in response.text, response.text
    assert (
        "messages[0]" in response.json()["error"]["message"]
        or "stream_options" in response.text
        or ("chat_template_kwargs" in response.text)
    )


def test_validation_errors_name_fields_by_position():
    from openmind_hf.serving.errors import describe_validation_errors

    errors = [
        {"type": "extra_forbidden", "loc": ("messages", 1, "content", "list[tagged-union[...]]", 0, "text", "evil<key>"), "msg": "x"},
        {"type": "literal_error", "loc": ("messages", 0, "role"), "msg": f"Input should be ... {SECRET_KEY}"},
        {"type": "some_new_type", "loc": ("messages", 2), "msg": SECRET_KEY},
    ]  # fmt: skip
    text = describe_validation_errors(errors)
    assert text == (
        "Invalid request: messages[1].content[0].text.<unknown field>: unknown field; remove it; "
        "messages[0].role: not one of the allowed values; messages[2]: invalid value"
    )


def test_every_field_of_the_request_schema_may_be_named_in_an_error():
    """The names an error may repeat come from the request model itself: a video part's fields are named, as an
    image part's are (a hand-kept list once left the video parts out: `<unknown field>.<unknown field>...`)."""
    import pydantic

    from openmind_hf.serving.errors import describe_validation_errors
    from openmind_hf.serving.schemas import FIELD_NAMES, ChatCompletionRequest

    assert {
        "video_url",
        "missing_audio",
        "input_audio",
        "image_url",
        "include_usage",
        "enable_thinking",
    } <= FIELD_NAMES
    part = {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA", "missing_audio": "nope"}}
    with pytest.raises(pydantic.ValidationError) as caught:
        ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": [part]}]})
    text = describe_validation_errors(caught.value.errors())
    assert "messages[0].content[0].video_url.video_url.missing_audio: not one of the allowed values" in text
    assert "<unknown field>" not in text
