"""The one media decoder: images, audio and video from bytes, files, arrays or PIL images.

The processor (what it is handed), the data path (record media, once `data/media.py` has read the bytes or checked
the path) and the server (request bytes, once `serving/media.py` has checked its size limits) all decode here, so an
input gives the same pixels, samples and frames whichever way it arrives. It lives in `processing/` because
processing imports nothing else of the package (a `trust_remote_code` checkpoint carries it).

Conventions:

- **Images** come out upright 8-bit RGB `PIL.Image`s: EXIF rotation applied, 16/32-bit gray scaled (not clipped),
  palette and alpha flattened onto white, CMYK converted.
- **Audio arrays** are `[samples]` (mono) or `[channels, samples]` (channels first, as torchaudio, librosa, PyAV and
  HF `datasets` give them). soundfile's `[frames, channels]` is transposed right where soundfile is called. A 2-D
  array with more than `MAX_AUDIO_CHANNELS` rows is refused (when it has few columns it is `[samples, channels]`:
  the error says to pass `array.T`); the layout is never guessed. Decoded audio is mono (the mean of the channels),
  float32, resampled with soxr ("HQ") to the rate asked for.
- **Video** files are decoded with PyAV, frames picked at the centres of equal time segments (`num_frames`), or one
  every `1 / fps` seconds, never more than `max_frames` nor more than the video has. A list of frames is taken as
  already sampled: it is only thinned to `num_frames` / `max_frames`, by the same centre rule over its indices.

Optional libraries (soundfile, soxr, PyAV) are imported by the function that needs them, not at import.
"""

from __future__ import annotations

import importlib
import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from .errors import MediaDecodeError

MAX_AUDIO_CHANNELS = 8  # more rows than this in a 2-D audio array means the array is not [channels, samples]


def _require(module: str, what: str):
    # importlib (not an `import` statement) so transformers' remote-code import check does not demand optional
    # libraries of checkpoints that never decode this kind of media.
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MediaDecodeError(
            f"decoding {what} needs the `{module}` package", kind="missing_library", hint=f"pip install {module}"
        ) from None


def _stream(source: Any):
    """bytes -> a fresh file object; a path or file object as is."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    return os.fspath(source) if isinstance(source, os.PathLike) else source


# ------------------------------------------------------------------------------------------------ images


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image -> upright 8-bit RGB: applies EXIF rotation, scales 16/32-bit, flattens alpha onto white."""
    image = ImageOps.exif_transpose(image)  # phone photos store rotation in EXIF, not in the pixels
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16/32-bit grayscale: scale to 8 bits (convert("L") would clip everything above 255 to white)
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        if image.mode == "F":
            top = max(float(pixels.max()), 1e-8)
        image = Image.fromarray(np.clip(pixels / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode == "P" or (image.mode in ("L", "RGB") and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels go on white: black would turn dark-on-transparent logos/charts into black squares.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def open_image(source: Any, *, formats: tuple[str, ...] | None = None, what: str = "image") -> Image.Image:
    """Parses an image's header only (PIL is lazy), so a caller can check its size before any pixel is decoded.

    Args:
        source (`bytes`, `str`, `os.PathLike`, file object, `PIL.Image.Image` or `np.ndarray`): the image.
        formats (`tuple[str]`, *optional*): PIL format names allowed (all when `None`).
        what (`str`, *optional*, defaults to `"image"`): how errors name the item.

    Raises:
        `MediaDecodeError`: `kind="too_large"` over PIL's decompression-bomb limit, `"unreadable"` otherwise.
    """
    if isinstance(source, Image.Image):
        return source
    try:
        if isinstance(source, np.ndarray):
            return Image.fromarray(source)
        return Image.open(_stream(source), formats=formats)
    except Image.DecompressionBombError as err:
        raise MediaDecodeError(f"{what} is too large to decode: {err}", kind="too_large") from None
    except Exception as err:  # noqa: BLE001 - PIL raises many types (UnidentifiedImageError, SyntaxError, ...)
        raise MediaDecodeError(f"cannot decode {what}: {err}") from err


def decode_image(source: Any, *, formats: tuple[str, ...] | None = None, what: str = "image") -> Image.Image:
    """Decodes an image to upright RGB (see the module conventions); a truncated file fails here, not later.

    Args:
        source: anything [`open_image`] takes, including an image it returned.
        formats (`tuple[str]`, *optional*): PIL format names allowed (all when `None`).
        what (`str`, *optional*, defaults to `"image"`): how errors name the item.

    Raises:
        `MediaDecodeError`: `kind` `"unreadable"`, `"too_large"` (PIL's bomb error, or its warning when the caller
        turned it into an error) or `"empty"` (no pixels).
    """
    image = open_image(source, formats=formats, what=what)
    try:
        image.load()  # decodes the pixels now (only the first frame of an animation)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise MediaDecodeError(f"{what} is too large to decode: {err}", kind="too_large") from None
    except Exception as err:  # noqa: BLE001 - same: any PIL failure means "unreadable"
        raise MediaDecodeError(f"cannot decode {what}: {err}") from err
    if image.width == 0 or image.height == 0:
        raise MediaDecodeError(f"{what} has no pixels ({image.width}x{image.height})", kind="empty")
    try:
        return to_rgb(image)
    except (OSError, ValueError) as err:
        raise MediaDecodeError(f"cannot convert {what} (mode {image.mode}) to RGB: {err}") from err


# ------------------------------------------------------------------------------------------------- audio


@dataclass(frozen=True)
class AudioHeader:
    """What an audio file's header says, read without decoding a sample."""

    format: str  # libsndfile's container name: "WAV", "FLAC", "MP3", "OGG", ...
    sampling_rate: int
    frames: int
    channels: int


def probe_audio(source: Any, what: str = "audio") -> AudioHeader:
    """Reads an audio file's header with soundfile (no sample is decoded).

    Raises:
        `MediaDecodeError`: the header is unreadable (`kind="unreadable"`).
    """
    sf = _require("soundfile", "audio")
    try:
        info = sf.info(_stream(source))
    except Exception as err:  # noqa: BLE001 - libsndfile raises several types
        raise MediaDecodeError(f"cannot read the header of {what}: {err}") from err
    return AudioHeader(info.format, int(info.samplerate), int(info.frames), int(info.channels))


def _read_audio_with_av(source: Any) -> tuple[np.ndarray, int]:
    av = _require("av", "audio")
    with av.open(_stream(source)) as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        resampler = av.AudioResampler(format="fltp")  # planar float, the file's own layout and rate
        chunks, rate = [], None
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())  # planar: [channels, samples]
                rate = out.sample_rate
        for out in resampler.resample(None):  # flush
            chunks.append(out.to_ndarray())
    if not chunks:
        return np.zeros((1, 0), np.float32), rate or 1
    return np.concatenate(chunks, axis=1).astype(np.float32), int(rate)


def read_audio(source: Any, *, what: str = "audio", use_pyav: bool = True) -> tuple[np.ndarray, int]:
    """Decodes an audio file at its own rate: soundfile first, then (`use_pyav`) PyAV for what libsndfile cannot
    read (m4a/aac, some mp3/ogg variants).

    Returns:
        `tuple[np.ndarray, int]`: the samples, float32 `[channels, samples]`, and the sampling rate.

    Raises:
        `MediaDecodeError`: no decoder could read it (`kind="unreadable"`).
    """
    sf = _require("soundfile", "audio")
    try:
        samples, rate = sf.read(_stream(source), dtype="float32", always_2d=True)
        return samples.T, int(rate)  # soundfile is [frames, channels]; the convention is [channels, samples]
    except Exception as sf_err:  # noqa: BLE001 - libsndfile raises several types; all mean "try the next reader"
        if not use_pyav:
            raise MediaDecodeError(f"cannot decode {what}: {sf_err}") from sf_err
        try:
            return _read_audio_with_av(source)
        except Exception as av_err:  # noqa: BLE001 - any decoder failure means "unreadable"
            raise MediaDecodeError(f"cannot decode {what}: {sf_err}; PyAV: {av_err}") from av_err


def audio_to_mono(waveform: Any, what: str = "audio") -> np.ndarray:
    """`[samples]` or `[channels, samples]` -> float32 `[samples]` (the mean of the channels).

    Raises:
        `MediaDecodeError`: `kind` `"layout"` (not 1-D/2-D, or more than `MAX_AUDIO_CHANNELS` rows), `"empty"` or
        `"non_finite"`.
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim == 2:
        channels, samples = waveform.shape
        if channels > MAX_AUDIO_CHANNELS:
            hint = (
                "it looks like [samples, channels] (soundfile's layout): pass `array.T`"
                if samples <= MAX_AUDIO_CHANNELS
                else f"give at most {MAX_AUDIO_CHANNELS} channels"
            )
            raise MediaDecodeError(
                f"{what} has shape {waveform.shape}, but audio arrays are [samples] or [channels, samples]",
                kind="layout",
                hint=hint,
            )
        waveform = waveform.mean(axis=0) if channels > 1 else waveform[0]
    elif waveform.ndim != 1:
        raise MediaDecodeError(
            f"{what} has shape {waveform.shape}, but audio arrays are [samples] or [channels, samples]", kind="layout"
        )
    if waveform.size == 0:
        raise MediaDecodeError(f"{what} is empty (0 samples)", kind="empty")
    if not np.isfinite(waveform).all():
        raise MediaDecodeError(f"{what} contains NaN or inf samples", kind="non_finite")
    return waveform


def decode_audio(
    source: Any,
    sampling_rate: int,
    *,
    source_rate: int | None = None,
    what: str = "audio",
    use_pyav: bool = True,
) -> np.ndarray:
    """Decodes audio to mono float32 `[samples]` at `sampling_rate` (see the module conventions).

    Args:
        source: a file (bytes, path, file object), an array (`[samples]` or `[channels, samples]`), or an HF
            decoded audio dict `{"array", "sampling_rate"}`.
        sampling_rate (`int`): the rate to return (the feature extractor's).
        source_rate (`int`, *optional*): the rate of an array `source` (defaults to `sampling_rate`); files carry
            their own.
        what (`str`, *optional*, defaults to `"audio"`): how errors name the item.
        use_pyav (`bool`, *optional*, defaults to True): fall back to PyAV for files libsndfile cannot read.

    Raises:
        `MediaDecodeError`: unreadable, empty, non-finite, or an array whose shape breaks the convention.
    """
    if isinstance(source, dict) and source.get("array") is not None:
        waveform, rate = source["array"], int(source.get("sampling_rate") or source_rate or sampling_rate)
        mono = audio_to_mono(waveform, what)
    elif isinstance(source, (np.ndarray, list, tuple)):
        mono, rate = audio_to_mono(source, what), int(source_rate or sampling_rate)
    else:
        waveform, rate = read_audio(source, what=what, use_pyav=use_pyav)
        # the layout is known here, so any channel count is fine
        mono = audio_to_mono(waveform.mean(axis=0) if len(waveform) > 1 else waveform[0], what)
    if rate != sampling_rate:
        soxr = _require("soxr", "audio at another sampling rate")
        mono = soxr.resample(mono, rate, sampling_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


# ------------------------------------------------------------------------------------------------- video


def _pick(times: np.ndarray, duration: float, num_frames: int | None, fps: float | None, max_frames: int | None):
    """Indices into frames at `times` (seconds, ascending): segment centres or one every 1/fps seconds."""
    count = len(times)
    cap = min(count, max_frames) if max_frames else count
    if fps is not None:
        targets = times[0] + np.arange(0.0, max(duration, 1e-6), 1.0 / fps)[:cap]
    else:
        k = max(1, min(num_frames if num_frames is not None else count, cap))
        # centres of k equal segments: never the (often black) first frame, never past the end
        targets = times[0] + (np.arange(k) + 0.5) * max(duration, 1e-6) / k
    picked = np.searchsorted(times, targets, side="right") - 1
    return np.clip(picked, 0, count - 1)


def _decode_video_file(source: Any, what: str, num_frames, fps, max_frames) -> list[Image.Image]:
    av = _require("av", "video")
    try:
        with av.open(_stream(source)) as container:
            if not container.streams.video:
                raise MediaDecodeError(f"{what} has no video stream")
            # Decode once, keeping (time, frame) pairs: short clips are the norm here, and container durations
            # are often missing or wrong, which makes seeking unreliable.
            decoded = [(float(f.time or 0.0), f) for f in container.decode(container.streams.video[0])]
            if not decoded:
                raise MediaDecodeError(f"{what} has no decodable frame", kind="empty")
            times = np.array([t for t, _ in decoded])
            duration = float(times[-1] - times[0] + (times[1] - times[0] if len(times) > 1 else 0.0))
            return [to_rgb(decoded[i][1].to_image()) for i in _pick(times, duration, num_frames, fps, max_frames)]
    except MediaDecodeError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as err:
        raise MediaDecodeError(f"cannot decode {what}: {type(err).__name__}: {err}") from None


def decode_video(
    source: Any,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    what: str = "video",
) -> list[Image.Image]:
    """Decodes a video and samples RGB frames (see the module conventions).

    Args:
        source: a file (bytes, path, file object) or a list of frames (PIL images or `[H, W(, C)]` uint8 arrays).
        num_frames (`int`, *optional*): frames to pick at the centres of equal segments; `None` = every frame (up
            to `max_frames`). Ignored when `fps` is given.
        fps (`float`, *optional*): pick one frame every `1 / fps` seconds instead (files only: a list of frames has
            no timing).
        max_frames (`int`, *optional*): never more frames than this.
        what (`str`, *optional*, defaults to `"video"`): how errors name the item.

    Returns:
        `list[PIL.Image.Image]`: RGB frames in time order.

    Raises:
        `MediaDecodeError`: unreadable file, no video stream, no frame; `ValueError` for `num_frames < 1`.
    """
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"give num_frames >= 1 or fps, got num_frames={num_frames}, fps={fps}")
    if isinstance(source, (list, tuple)):
        if not source:
            raise MediaDecodeError(f"{what} has no frames", kind="empty")
        times = np.arange(len(source), dtype=np.float64)
        picked = _pick(times, float(len(source)), num_frames, None, max_frames)
        return [decode_image(source[i], what=f"frame {i} of {what}") for i in picked]
    return _decode_video_file(source, what, num_frames, fps, max_frames)


__all__ = [
    "MAX_AUDIO_CHANNELS",
    "AudioHeader",
    "MediaDecodeError",
    "audio_to_mono",
    "decode_audio",
    "decode_image",
    "decode_video",
    "open_image",
    "probe_audio",
    "read_audio",
    "to_rgb",
]
