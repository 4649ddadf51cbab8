"""`openmind chat` as users run it, and the upload rules that keep it to the files a user uploaded.

The end-to-end test runs both commands as subprocesses on 127.0.0.1: `openmind serve` with the tiny preset, and
`openmind chat --endpoint ... --auth USER:PASSWORD` in front of it, driven by `gradio_client`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from openmind_hf.chat.commands import parse_auth, serve_settings
from openmind_hf.chat.uploads import UploadError, UploadLimits, VideoOptions, media_parts, read_upload
from openmind_hf.cli import build_parser

KEY = "chat-cli-key"
SRC = str(Path(__file__).resolve().parents[1] / "src")


def parse(*argv):
    argv = ["chat", *argv]
    return build_parser(argv).parse_args(argv)


def test_defaults_bind_loopback_without_share():
    args = parse("--model", "x")
    assert (args.host, args.share, args.auth) == ("127.0.0.1", False, None)
    assert parse_auth(args) is None
    # the in-process server takes a conversation holding as many whole uploads (base64) as the count limits allow
    settings = serve_settings(args, "x")
    assert settings.max_body_bytes >= 10 * 2**20 * 4 / 3 * (settings.max_images + settings.max_audios)
    with pytest.raises(SystemExit):  # --model and --endpoint exclude each other, and one is required
        parse("--model", "x", "--endpoint", "http://127.0.0.1:1/v1")


@pytest.mark.parametrize(
    "argv, error",
    [
        (("--host", "0.0.0.0"), "reachable from other machines"),
        (("--share",), "reachable from other machines"),
        (("--auth", "alice"), "USER:PASSWORD"),
        (("--auth", ":secret"), "USER:PASSWORD"),
    ],
)
def test_auth_is_required_off_loopback_and_well_formed(argv, error):
    with pytest.raises(ValueError, match=error):
        parse_auth(parse("--model", "x", *argv))
    assert parse_auth(parse("--model", "x", "--host", "0.0.0.0", "--auth", "alice:s:3")) == ("alice", "s:3")


def test_only_uploaded_files_are_read(tmp_path):
    root, outside = tmp_path / "uploads", tmp_path / "secret.png"
    root.mkdir()
    outside.write_bytes(b"not yours")
    (root / "link.png").symlink_to(outside)
    for path in (outside, root / "link.png", root / ".." / "secret.png", root / "missing.png"):
        with pytest.raises(UploadError, match="only files uploaded through this page"):
            read_upload(str(path), str(root), UploadLimits())
    (root / "big.wav").write_bytes(b"\0" * 2048)
    with pytest.raises(UploadError, match=r"big.wav is 0.0 MiB; the limit is"):
        read_upload(str(root / "big.wav"), str(root), UploadLimits(max_upload_bytes=1024))
    (root / "notes.txt").write_text("hi")
    with pytest.raises(UploadError, match=r"notes.txt: unsupported file type .txt"):
        media_parts(str(root / "notes.txt"), str(root), UploadLimits())


def write_video(path: Path, frames: int = 12, size=(32, 24)) -> Path:
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=6)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for index in range(frames):
            image = np.full((size[1], size[0], 3), index * 20, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_a_video_is_sent_as_evenly_spaced_frames(tmp_path):
    from openmind_hf.serving.media import MediaLimits, decode_image, split_data_uri

    video, frames = write_video(tmp_path / "clip.mp4"), VideoOptions(as_frames=True)
    parts = media_parts(str(video), str(tmp_path), UploadLimits(video_frames=3), frames)
    assert [p["type"] for p in parts] == ["image_url"] * 3
    images = [decode_image(split_data_uri(p["image_url"]["url"], "frame")[1], MediaLimits(10**6, 30)) for p in parts]
    brightness = [images[i].convert("L").getpixel((0, 0)) for i in range(3)]
    assert images[0].size == (32, 24) and brightness == sorted(brightness) and brightness[-1] > brightness[0] + 100
    with pytest.raises(UploadError, match="the limits are 100 pixels per frame"):
        media_parts(str(video), str(tmp_path), UploadLimits(max_video_pixels=100), frames)
    (tmp_path / "broken.mp4").write_bytes(b"\0" * 100)
    with pytest.raises(UploadError, match="broken.mp4 could not be read as a video"):
        media_parts(str(tmp_path / "broken.mp4"), str(tmp_path), UploadLimits(), frames)


def test_a_video_is_sent_whole_as_video_url_and_heard_when_asked(tmp_path):
    import numpy as np

    from openmind_hf.data.synthetic import write_video as write_video_with_sound
    from openmind_hf.serving.media import MediaLimits, decode_video, split_data_uri

    frames = [np.full((32, 32, 3), 200, dtype=np.uint8)] * 4
    sound = tmp_path / "tone.mp4"
    write_video_with_sound(sound, frames, fps=4, audio=np.sin(np.arange(16000) * 0.2).astype(np.float32) * 0.3)
    (part,) = media_parts(str(sound), str(tmp_path), UploadLimits())
    assert (
        part["type"] == "video_url" and part["video_url"]["audio"] is True and "missing_audio" not in part["video_url"]
    )
    mime, data = split_data_uri(part["video_url"]["url"], "video")
    assert mime == "video/mp4" and data == sound.read_bytes(), "the file is sent whole, not re-encoded"
    clip = decode_video(data, MediaLimits(10**6, 30), num_frames=2, hear=True)  # what the server will do with it
    assert len(clip.frames) == 2 and abs(len(clip.audio) - 16000) < 1600 and np.abs(clip.audio).max() > 0.1

    silent = write_video(tmp_path / "silent.mp4")
    (part,) = media_parts(str(silent), str(tmp_path), UploadLimits(), VideoOptions(silence_if_mute=True))
    assert part["video_url"]["audio"] is True and part["video_url"]["missing_audio"] == "silence"
    (part,) = media_parts(str(silent), str(tmp_path), UploadLimits(), VideoOptions(hear=False))
    assert part["video_url"]["audio"] is False and "missing_audio" not in part["video_url"]
    with pytest.raises(UploadError, match=r"silent.mp4 is 32x24 pixels and 2.0 s; the limits are 100 pixels"):
        media_parts(str(silent), str(tmp_path), UploadLimits(max_video_pixels=100))
    with pytest.raises(UploadError, match=r"the limits are .* and 1 s"):
        media_parts(str(silent), str(tmp_path), UploadLimits(max_video_seconds=1.0))
    shutil.copyfile(silent, tmp_path / "clip.avi")  # FFmpeg demuxers the server does not open are not sent
    with pytest.raises(UploadError, match=r"clip.avi: .avi videos are not sent to the model; convert it to mp4"):
        media_parts(str(tmp_path / "clip.avi"), str(tmp_path), UploadLimits())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(*argv) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "OPENMIND_API_KEY": KEY}
    command = [sys.executable, "-m", "openmind_hf.cli", *argv]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    process.lines = []  # read continuously, so the pipe never fills
    threading.Thread(target=lambda: process.lines.extend(iter(process.stdout.readline, "")), daemon=True).start()
    return process


def wait_until(process, ready, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what}: exited with {process.returncode}:\n{''.join(process.lines)[-3000:]}")
        try:
            if ready():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen in time:\n{''.join(process.lines)[-3000:]}")


def stop(process) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.mark.slow  # two processes each import torch + transformers (+ gradio): ~25 s idle, ~75 s on a busy 2-core box
def test_chat_in_front_of_openmind_serve(tiny_checkpoint):
    gradio_client = pytest.importorskip("gradio_client", reason="the `chat` extra is not installed")
    serve_port, chat_port = free_port(), free_port()
    server = start("serve", "--model", str(tiny_checkpoint), "--port", str(serve_port))
    chat = None
    try:
        wait_until(server, lambda: httpx.get(f"http://127.0.0.1:{serve_port}/health").status_code == 200, "serve")
        chat = start(
            "chat", "--endpoint", f"http://127.0.0.1:{serve_port}/v1", "--port", str(chat_port),
            "--auth", "alice:wonderland", "--max-tokens-cap", "32",
        )  # fmt: skip
        url = f"http://127.0.0.1:{chat_port}/"
        wait_until(chat, lambda: httpx.get(url).status_code == 200, "the chat page")
        assert "videos as video_url" in "".join(chat.lines), "an OpenMind endpoint was not recognised"
        assert httpx.get(url + "config").status_code == 401, "the page's API answered without logging in"
        client = gradio_client.Client(url, auth=("alice", "wonderland"), verbose=False)
        job = client.submit({"text": "Hello!", "files": []}, False, 0, 1.0, 12, True, False, api_name="/send")
        shown, status = job.result(timeout=120)[0], job.result()[2]
        assert status == "Done.", status
        assert shown[-1]["role"] == "assistant" and shown[-1]["metadata"] is None, shown
        assert len(job.outputs()) >= 3, "the answer was not streamed"
    finally:
        if chat is not None:
            stop(chat)
        stop(server)
