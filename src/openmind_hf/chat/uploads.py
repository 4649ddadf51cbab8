"""Uploaded files -> OpenAI content parts. Only files inside Gradio's upload folder are read, and their size is
checked from the file system before a byte is read. Pixel and duration limits are then enforced by the server's
own decoders (`serving.media`), which read them from the headers before decoding anything.

Images go as `image_url` data URIs, audio (wav/mp3/flac; the microphone records wav) as `input_audio`. A video goes
as one `video_url` data URI (MP4/MOV or WebM/MKV, the containers `openmind serve` demuxes) with `audio` (hear its
sound too) and, when asked, `missing_audio: "silence"`: the server samples the frames and decodes the sound, so the
model sees a video exactly as in training. OpenAI's API and servers such as vLLM know no heard `video_url`, so for
them (`VideoOptions(as_frames=True)`) a video is sent as a few evenly spaced frames (PNG images), without its sound.
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass
from pathlib import Path

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
               ".gif": "image/gif", ".bmp": "image/bmp"}  # fmt: skip
AUDIO_TYPES = {".wav": "wav", ".mp3": "mp3", ".flac": "flac"}
# Sent as `video_url`: the containers the server's demuxers accept (serving.media.VIDEO_CONTAINERS).
VIDEO_URL_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime", ".mkv": "video/x-matroska"}
VIDEO_TYPES = {*VIDEO_URL_TYPES, ".avi"}  # .avi: frames only


class UploadError(ValueError):
    """An upload the chat will not send; the message names the file and says what to do."""


@dataclass(frozen=True)
class UploadLimits:
    r"""
    Args:
        max_upload_bytes (`int`, *optional*, defaults to 10 MiB): size per uploaded file (Gradio refuses larger
            uploads too, through `launch(max_file_size=...)`).
        video_frames (`int`, *optional*, defaults to 4): frames sent per video when videos go as frames (each counts
            as an image); a `video_url` part is sampled by the server (its processor's `video_max_frames`).
        max_video_pixels (`int`, *optional*, defaults to 1920 * 1080): pixels per video frame, read from the header.
        max_video_seconds (`float`, *optional*, defaults to 60): video duration, read from the header.
    """

    max_upload_bytes: int = 10 * 1024 * 1024
    video_frames: int = 4
    max_video_pixels: int = 1920 * 1080
    max_video_seconds: float = 60.0


@dataclass(frozen=True)
class VideoOptions:
    r"""
    How the videos of one message are sent.

    Args:
        as_frames (`bool`, *optional*, defaults to False): send evenly spaced PNG frames (image parts) instead of a
            `video_url` part, for servers that do not take videos; the sound is then never heard.
        hear (`bool`, *optional*, defaults to True): ask the server to hear the video's sound (`audio: true`).
        silence_if_mute (`bool`, *optional*, defaults to False): a heard video without an audio track is heard as
            silence (`missing_audio: "silence"`) instead of being refused by the server.
    """

    as_frames: bool = False
    hear: bool = True
    silence_if_mute: bool = False


def read_upload(path: str, upload_root: str, limits: UploadLimits) -> tuple[bytes, str]:
    """The bytes of an uploaded file and its name for messages. Refuses paths outside `upload_root` (symlinks
    resolved), so a crafted request cannot make the chat read other files of this machine."""
    name = Path(path).name
    resolved, root = os.path.realpath(path), os.path.realpath(upload_root)
    if os.path.commonpath([resolved, root]) != root or not os.path.isfile(resolved):
        raise UploadError(f"{name}: only files uploaded through this page are read.")
    size = os.path.getsize(resolved)
    if size > limits.max_upload_bytes:
        raise UploadError(f"{name} is {size / 2**20:.1f} MiB; the limit is {limits.max_upload_bytes / 2**20:g} MiB.")
    with open(resolved, "rb") as handle:
        return handle.read(limits.max_upload_bytes + 1)[: limits.max_upload_bytes], name


def media_parts(path: str, upload_root: str, limits: UploadLimits, video: VideoOptions | None = None) -> list[dict]:
    """OpenAI content parts for one uploaded file (one part, or one per sampled frame when videos go as frames)."""
    suffix = Path(path).suffix.lower()
    data, name = read_upload(path, upload_root, limits)
    if suffix in IMAGE_TYPES:
        return [_image_part(data, IMAGE_TYPES[suffix])]
    if suffix in AUDIO_TYPES:
        return [{"type": "input_audio", "input_audio": {"data": _b64(data), "format": AUDIO_TYPES[suffix]}}]
    if suffix in VIDEO_TYPES:
        video = video or VideoOptions()
        if video.as_frames:
            return [_image_part(frame, "image/png") for frame in video_frames(data, name, limits)]
        return [video_part(data, name, suffix, limits, video)]
    kinds = sorted([*IMAGE_TYPES, *AUDIO_TYPES, *VIDEO_TYPES])
    raise UploadError(f"{name}: unsupported file type {suffix or '(none)'}; send one of {', '.join(kinds)}.")


def video_header(data: bytes, name: str, limits: UploadLimits):
    """The container's `VideoHeader` (`processing.probe_video`: no frame decoded), after checking the frame size and
    duration against `limits`."""
    from ..processing.media_decoding import MediaDecodeError, probe_video

    try:
        header = probe_video(data, name)
    except MediaDecodeError:
        raise UploadError(f"{name} could not be read as a video; send an mp4/webm PyAV can decode.") from None
    width, height, seconds = header.width, header.height, header.duration or 0.0
    if width * height > limits.max_video_pixels or seconds > limits.max_video_seconds:
        raise UploadError(
            f"{name} is {width}x{height} pixels and {seconds:.1f} s; the limits are "
            f"{limits.max_video_pixels} pixels per frame and {limits.max_video_seconds:g} s."
        )
    return header


def video_part(data: bytes, name: str, suffix: str, limits: UploadLimits, options: VideoOptions) -> dict:
    """One `video_url` part: the whole file as a data URI, heard when `options.hear`. A silent video that is to be
    heard is sent as asked: the server's refusal (or its silence, with `silence_if_mute`) is the one rule."""
    if suffix not in VIDEO_URL_TYPES:
        raise UploadError(f"{name}: {suffix} videos are not sent to the model; convert it to mp4 or webm.")
    video_header(data, name, limits)
    part = {"url": f"data:{VIDEO_URL_TYPES[suffix]};base64,{_b64(data)}", "audio": options.hear}
    if options.hear and options.silence_if_mute:
        part["missing_audio"] = "silence"
    return {"type": "video_url", "video_url": part}


def video_frames(data: bytes, name: str, limits: UploadLimits) -> list[bytes]:
    """`limits.video_frames` frames as PNG bytes, picked as training picks them (`processing.decode_video`: segment
    centres, seeking to each, converting only those), after `video_header`'s size and duration checks."""
    from ..processing.media_decoding import MediaDecodeError, decode_video

    video_header(data, name, limits)
    try:
        frames = decode_video(data, num_frames=limits.video_frames, what=name)
    except MediaDecodeError:
        raise UploadError(f"{name} could not be read as a video; send an mp4/webm PyAV can decode.") from None
    if not frames:
        raise UploadError(f"{name} holds no video frames.")
    encoded = []
    for frame in frames:
        buffer = io.BytesIO()
        frame.save(buffer, "PNG")
        encoded.append(buffer.getvalue())
    return encoded


def _image_part(data: bytes, mime: str) -> dict:
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{_b64(data)}"}}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


__all__ = [
    "UploadError",
    "UploadLimits",
    "VideoOptions",
    "read_upload",
    "media_parts",
    "video_header",
    "video_part",
    "video_frames",
]
