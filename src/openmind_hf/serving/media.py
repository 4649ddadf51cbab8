"""Safe decoding of request media: data: URIs and base64 images, base64 wav/mp3/flac audio.

This module keeps the server's own job: base64 and data: URIs, the allowed formats, and the size limits, checked
from the file headers BEFORE any pixel or sample is decoded, so a small payload that claims a 100k x 100k image or
an hour of audio costs a header read, not gigabytes. Decoding itself is the package's one decoder,
`openmind_hf.processing.media_decoding` (the same pixels and samples as in training). Only bytes are accepted:
nothing here opens a path or a URL (transformers' `load_image` / `load_audio` would do both). Error messages are
the server's own: they name the item and the limit, never a library's message or the bytes.
"""

from __future__ import annotations

import base64
import binascii
import re
import warnings
from dataclasses import dataclass

from PIL import Image

from ..processing.media_decoding import MediaDecodeError, VideoClip, open_image, probe_audio, probe_video
from ..processing.media_decoding import decode_audio as _decode_audio
from ..processing.media_decoding import decode_image as _decode_image
from ..processing.media_decoding import decode_video as _decode_video
from ..processing.media_decoding import decode_video_audio as _decode_video_audio

# PIL plugins we let parse client bytes; the long tail of formats (PSD, EPS, ...) is more attack surface than use.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
# Declared OpenAI audio format -> libsndfile container names that may carry it.
AUDIO_FORMATS = {"wav": {"WAV", "WAVEX", "RF64"}, "mp3": {"MP3"}, "flac": {"FLAC"}}
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.I)


class MediaError(ValueError):
    """A client's media could not be accepted; the message names the item and the limit, never the bytes."""


@dataclass(frozen=True)
class MediaLimits:
    r"""
    Args:
        max_pixels (`int`): width x height allowed per image, checked from the header before decoding.
        max_audio_seconds (`float`): duration allowed per audio clip, checked from the header before decoding.
        max_audio_channels (`int`, *optional*, defaults to 8): channels allowed per audio clip.
        max_video_seconds (`float`, *optional*, defaults to 60): duration allowed per video, from its container.
        max_video_frames (`int`, *optional*, defaults to 1800): frames allowed per video, from its container.
    """

    max_pixels: int
    max_audio_seconds: float
    max_audio_channels: int = 8
    max_video_seconds: float = 60.0
    max_video_frames: int = 1800


def decode_base64(text: str, what: str) -> bytes:
    """Strict base64 (standard or URL-safe alphabet, whitespace allowed): anything else is a `MediaError`."""
    compact = "".join(text.split()).replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(compact.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise MediaError(f"{what} is not valid base64.") from None


def split_data_uri(uri: str, what: str) -> tuple[str | None, bytes]:
    """`data:image/png;base64,....` -> ("image/png", bytes). Only base64 data URIs are accepted."""
    match = _DATA_URI.match(uri[:256])
    if match is None or not match.group("b64"):
        raise MediaError(f"{what} is not a base64 data: URI (expected `data:<mime type>;base64,<data>`).")
    mime = match.group("mime").lower() if match.group("mime") else None
    return mime, decode_base64(uri[match.end() :], what)


def decode_image(data: bytes, limits: MediaLimits, what: str = "image") -> Image.Image:
    """Bytes of a PNG/JPEG/WebP/GIF/BMP -> an upright RGB PIL image, checking the pixel count from the header
    first (`open_image` parses the header only; pixels are decoded after the check)."""
    too_large = f"{what} is larger than the pixel limit of {limits.max_pixels} pixels per image."
    try:
        image = open_image(data, formats=IMAGE_FORMATS, what=what)
    except MediaDecodeError as err:
        message = (
            too_large if err.kind == "too_large" else f"{what} is not a readable {'/'.join(IMAGE_FORMATS)} image."
        )
        raise MediaError(message) from None
    width, height = image.size
    if width < 1 or height < 1 or width * height > limits.max_pixels:
        raise MediaError(f"{what} is {width}x{height} pixels; the limit is {limits.max_pixels} pixels per image.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a warning would let the image through
            return _decode_image(image, what=what)
    except MediaDecodeError as err:
        message = too_large if err.kind == "too_large" else f"{what} is truncated or corrupt and could not be decoded."
        raise MediaError(message) from None


def decode_audio(data: bytes, declared_format: str, limits: MediaLimits, sampling_rate: int, what: str = "audio"):
    """Bytes of a wav/mp3/flac clip -> mono float32 samples at `sampling_rate`. The container must match the
    declared format, and the duration (read from the header) must fit `limits` before anything is decoded."""
    accepted = AUDIO_FORMATS.get(declared_format)
    if accepted is None:
        raise MediaError(f"{what}: format must be one of {sorted(AUDIO_FORMATS)}.")
    try:
        header = probe_audio(data, what)
    except MediaDecodeError:  # libsndfile errors carry no safe detail for the client
        raise MediaError(f"{what} could not be read as {declared_format}; send wav, mp3 or flac audio.") from None
    if header.format not in accepted:
        raise MediaError(f"{what} is not {declared_format} audio (unsupported codec or container).")
    if header.sampling_rate <= 0 or header.frames <= 0 or not 1 <= header.channels <= limits.max_audio_channels:
        raise MediaError(f"{what} is empty or has an unsupported channel layout.")
    duration = header.frames / header.sampling_rate
    if duration > limits.max_audio_seconds:
        raise MediaError(f"{what} lasts {duration:.1f} s; the limit is {limits.max_audio_seconds:g} s per clip.")
    try:
        # no PyAV fallback: only what libsndfile identified (and the limits were checked on) is decoded
        return _decode_audio(data, sampling_rate, what=what, use_pyav=False)
    except MediaDecodeError as err:
        if err.kind in ("empty", "non_finite"):
            raise MediaError(f"{what} holds no samples or non-finite samples.") from None
        raise MediaError(f"{what} is truncated or corrupt and could not be decoded.") from None


# FFmpeg demuxers we let parse client video bytes (MP4/MOV and WebM/Matroska), not FFmpeg's whole list.
VIDEO_CONTAINERS = {"mp4", "mov", "webm", "matroska"}


def decode_video(
    data: bytes,
    limits: MediaLimits,
    *,
    num_frames: int,
    hear: bool = False,
    missing_audio: str = "error",
    sampling_rate: int = 16000,
    what: str = "video",
):
    """Bytes of an MP4/WebM video -> its sampled frames, or a `VideoClip` (frames + sound) when `hear`. Duration,
    frame size (`max_pixels`, as for images), frame count, and (when heard) the sound's length are checked from the
    container before anything is decoded."""
    try:
        header = probe_video(data, what)
    except MediaDecodeError:
        raise MediaError(f"{what} could not be read as a video; send MP4 or WebM.") from None
    if not VIDEO_CONTAINERS & set(header.container.split(",")):
        raise MediaError(f"{what} is not an MP4 or WebM video.")
    if header.duration is None or header.duration <= 0:
        raise MediaError(f"{what} does not state its duration; send MP4 or WebM with a duration.")
    if header.duration > limits.max_video_seconds:
        raise MediaError(
            f"{what} lasts {header.duration:.1f} s; the limit is {limits.max_video_seconds:g} s per video."
        )
    if header.width * header.height > limits.max_pixels:
        raise MediaError(
            f"{what} is {header.width}x{header.height} pixels; the limit is {limits.max_pixels} pixels per frame."
        )
    if header.frames is not None and header.frames > limits.max_video_frames:
        raise MediaError(f"{what} has {header.frames} frames; the limit is {limits.max_video_frames} per video.")
    if hear and header.duration > limits.max_audio_seconds:
        raise MediaError(
            f"the sound of {what} lasts {header.duration:.1f} s; the limit is {limits.max_audio_seconds:g} s per clip."
        )
    if hear and not header.has_audio and missing_audio != "silence":
        raise MediaError(
            f"{what} has no audio track: send a video with sound, set `audio` to false, or `missing_audio` to "
            '"silence".'
        )
    try:
        frames = _decode_video(
            data, num_frames, max_frames=num_frames, what=what, max_source_frames=limits.max_video_frames
        )
        if not hear:
            return frames
        sound = _decode_video_audio(data, sampling_rate, missing=missing_audio, what=what)
        return VideoClip(frames, sound, sampling_rate)
    except MediaDecodeError:
        raise MediaError(f"{what} is truncated or corrupt and could not be decoded.") from None


__all__ = [
    "IMAGE_FORMATS",
    "VIDEO_CONTAINERS",
    "decode_video",
    "AUDIO_FORMATS",
    "MediaError",
    "MediaLimits",
    "decode_base64",
    "split_data_uri",
    "decode_image",
    "decode_audio",
]
