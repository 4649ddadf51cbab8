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
  A `start`/`end` span (seconds from the first frame) restricts the targets to `[start, end)`; the decoder seeks to
  the keyframe before a far target instead of decoding every frame, and converts only the frames it picks. The
  frame budget (`max_source_frames`) is checked from the container's duration and rate before decoding.
- **Video sound** (`decode_video_audio`) is the audio stream over the same span, mono at the rate asked for; a
  video without an audio stream is an error (`kind="no_audio"`) unless silence is asked for, and a span longer than
  `max_seconds` (the audio tower's window) is refused from the container before decoding. `VideoClip` carries
  frames + sound once decoded (what the data path hands the processor).

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


_EXIF_ORIENTATION = 0x0112


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image -> upright 8-bit RGB: applies EXIF rotation, scales 16/32-bit, flattens alpha onto white."""
    image.load()  # some formats (PNG) keep their EXIF after the pixels
    if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:  # exif_transpose copies the image even when upright
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
    max_seconds: float | None = None,
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
        max_seconds (`float`, *optional*): refuse a longer clip (`kind="too_long"`); a file's duration is read from
            its header before any sample is decoded (when libsndfile can read the header).

    Raises:
        `MediaDecodeError`: unreadable, empty, non-finite, too long, or an array whose shape breaks the convention.
    """
    if isinstance(source, dict) and source.get("array") is not None:
        waveform, rate = source["array"], int(source.get("sampling_rate") or source_rate or sampling_rate)
        mono = audio_to_mono(waveform, what)
    elif isinstance(source, (np.ndarray, list, tuple)):
        mono, rate = audio_to_mono(source, what), int(source_rate or sampling_rate)
    else:
        if max_seconds is not None:
            _check_header_length(source, max_seconds, what)
        waveform, rate = read_audio(source, what=what, use_pyav=use_pyav)
        # the layout is known here, so any channel count is fine
        mono = audio_to_mono(waveform.mean(axis=0) if len(waveform) > 1 else waveform[0], what)
    if max_seconds is not None and mono.size / rate > max_seconds + 1e-6:
        raise _too_long(what, mono.size / rate, max_seconds)
    if rate != sampling_rate:
        soxr = _require("soxr", "audio at another sampling rate")
        mono = soxr.resample(mono, rate, sampling_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def _too_long(what: str, seconds: float, max_seconds: float) -> MediaDecodeError:
    return MediaDecodeError(
        f"{what} lasts {seconds:.2f} s; the limit is {max_seconds:g} s per clip",
        kind="too_long",
        hint=f"cut it to at most {max_seconds:g} s",
    )


def _check_header_length(source: Any, max_seconds: float, what: str) -> None:
    """Refuse a file whose header says it is longer than `max_seconds`, before decoding; a header libsndfile
    cannot read is left to the decoder (the decoded length is checked then)."""
    if isinstance(source, io.IOBase):
        return  # reading the header would move a caller's file object
    try:
        header = probe_audio(source, what)
    except MediaDecodeError:
        return
    if header.sampling_rate > 0 and header.frames / header.sampling_rate > max_seconds + 1e-6:
        raise _too_long(what, header.frames / header.sampling_rate, max_seconds)


# ------------------------------------------------------------------------------------------------- video


def _pick(times: np.ndarray, duration: float, num_frames: int | None, fps: float | None, max_frames: int | None):
    """Indices into frames at `times` (seconds, ascending): segment centres or one every 1/fps seconds."""
    count = len(times)
    targets = _targets(float(times[0]), duration, count, num_frames, fps, max_frames)
    picked = np.searchsorted(times, targets, side="right") - 1
    return np.clip(picked, 0, count - 1)


def _targets(begin: float, duration: float, count: int, num_frames, fps, max_frames) -> np.ndarray:
    """Times (seconds) to take frames at, for `count` frames over `[begin, begin + duration)`."""
    cap = min(count, max_frames) if max_frames else count
    if fps is not None:
        return begin + np.arange(0.0, max(duration, 1e-6), 1.0 / fps)[: max(cap, 1)]
    k = max(1, min(num_frames if num_frames is not None else count, cap))
    # centres of k equal segments: never the (often black) first frame, never past the end
    return begin + (np.arange(k) + 0.5) * max(duration, 1e-6) / k


@dataclass(frozen=True)
class VideoHeader:
    """What a video container says about itself, read without decoding a frame (`None`: the container is silent)."""

    start: float  # seconds: the first frame's time (often 0)
    duration: float | None  # seconds, of the video stream
    frames: int | None
    fps: float | None
    has_audio: bool
    audio_sampling_rate: int | None
    container: str = ""  # FFmpeg's demuxer names, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    width: int = 0  # pixels per frame, as the stream declares them
    height: int = 0


@dataclass
class VideoClip:
    """A decoded video that is also heard: its sampled frames and the sound of the same time span.

    Args:
        frames (`list[PIL.Image.Image]`): RGB frames in time order.
        audio (`np.ndarray`): mono float32 `[samples]` of the span the frames were sampled from.
        sampling_rate (`int`): the rate of `audio`.
    """

    frames: list
    audio: np.ndarray
    sampling_rate: int


def _header(container) -> VideoHeader:
    video = container.streams.video[0]
    base = float(video.time_base) if video.time_base else None
    start = float(video.start_time * base) if video.start_time is not None and base else 0.0
    duration = float(video.duration * base) if video.duration and base else None
    if duration is None and container.duration:  # container-level microseconds (e.g. webm/mkv)
        duration = container.duration / 1_000_000 - start
    fps = float(video.average_rate) if video.average_rate else None
    frames = int(video.frames) if video.frames else (round(duration * fps) if duration and fps else None)
    audio = container.streams.audio[0] if container.streams.audio else None
    rate = int(audio.rate) if audio else None
    width, height = int(video.codec_context.width or 0), int(video.codec_context.height or 0)
    return VideoHeader(
        start, duration, frames, fps, audio is not None, rate, container.format.name or "", width, height
    )


def probe_video(source: Any, what: str = "video") -> VideoHeader:
    """Reads a video's container metadata with PyAV (no frame is decoded).

    Raises:
        `MediaDecodeError`: unreadable container (`kind="unreadable"`) or no video stream (`kind="empty"`).
    """
    av = _require("av", "video")
    try:
        with av.open(_stream(source)) as container:
            if not container.streams.video:
                raise MediaDecodeError(f"{what} has no video stream", kind="empty")
            return _header(container)
    except MediaDecodeError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise MediaDecodeError(f"cannot decode {what}: {type(err).__name__}: {err}") from None


def video_span(header: VideoHeader, start: float | None, end: float | None, what: str) -> tuple[float, float | None]:
    """`(begin, length)` in seconds of the span `[start, end)` (relative to the first frame); `length` is `None` when
    neither `end` nor the container's duration is known.

    Raises:
        `MediaDecodeError`: `kind="span"` when the span is empty, negative or starts after the video ends.
    """
    begin = float(start or 0.0)
    total = header.duration
    stop = float(end) if end is not None else total
    if total is not None and stop is not None:
        stop = min(stop, total)
    if begin < 0 or (stop is not None and stop <= begin):
        raise MediaDecodeError(
            f"{what} has an empty or negative span: start={start}, end={end}"
            + (f" (the video lasts {total:.2f} s)" if total is not None else ""),
            kind="span",
            hint="give 0 <= start < end within the video",
        )
    return header.start + begin, (stop - begin) if stop is not None else None


def _check_frame_budget(header: VideoHeader, length: float | None, max_source_frames: int | None, what: str):
    if not max_source_frames or length is None or not header.fps:
        return
    frames = round(length * header.fps)
    if frames > max_source_frames:
        raise MediaDecodeError(
            f"{what} spans {frames} frames ({length:.1f} s at {header.fps:g} fps); the limit is {max_source_frames} "
            "frames per video",
            kind="too_long",
            hint="cut it (give a start/end span) or raise the video frame limit",
        )


# Seek again (to the keyframe before the next target) only when the next target is this far ahead of the last decoded
# frame; closer targets are reached by decoding on, which is cheaper than a seek plus a decode from a keyframe.
SEEK_AHEAD_SECONDS = 1.0


def _frames_at(container, stream, targets: np.ndarray) -> list:
    """The last frame at or before each target time (seconds), seeking to keyframes instead of decoding the frames
    between far-apart targets. Only the picked frames are converted to images."""
    base = float(stream.time_base)
    picked, frames, current, pending = [], None, None, None
    for target in targets:
        last = pending.time if pending is not None else (current.time if current is not None else None)
        if frames is None or (last is not None and target - float(last) > SEEK_AHEAD_SECONDS):
            container.seek(max(0, int(target / base)), stream=stream, backward=True, any_frame=False)
            frames, current, pending = container.decode(stream), None, None
        if pending is not None and float(pending.time or 0.0) <= target + 1e-9:
            current, pending = pending, None
        if pending is None:
            for frame in frames:
                if float(frame.time or 0.0) <= target + 1e-9:
                    current = frame
                else:
                    pending = frame
                    break
        chosen = current if current is not None else pending  # a seek that landed past the target: nearest frame
        if chosen is None:
            raise MediaDecodeError("no decodable frame in the span", kind="empty")
        picked.append(chosen)
    return [to_rgb(frame.to_image()) for frame in picked]


def _decode_all(container, stream, begin: float, length: float | None, max_source_frames, what, sampling):
    """Fallback when the container gives no duration: decode the span frame by frame (stopping at the frame budget),
    then pick by the same rule."""
    if begin > 0:
        container.seek(max(0, int(begin / float(stream.time_base))), stream=stream, backward=True)
    decoded = []
    for frame in container.decode(stream):
        time = float(frame.time or 0.0)
        if time < begin - 1e-9:
            continue
        if length is not None and time >= begin + length:
            break
        decoded.append((time, frame))
        if max_source_frames and len(decoded) > max_source_frames:
            raise MediaDecodeError(
                f"{what} has more than {max_source_frames} frames; the limit is {max_source_frames} frames per video",
                kind="too_long",
                hint="cut it (give a start/end span) or raise the video frame limit",
            )
    if not decoded:
        raise MediaDecodeError(f"{what} has no decodable frame", kind="empty")
    times = np.array([t for t, _ in decoded])
    duration = float(times[-1] - times[0] + (times[1] - times[0] if len(times) > 1 else 0.0))
    return [to_rgb(decoded[i][1].to_image()) for i in _pick(times, duration, *sampling)]


def _decode_video_file(source, what, num_frames, fps, max_frames, start, end, max_source_frames) -> list:
    av = _require("av", "video")
    try:
        with av.open(_stream(source)) as container:
            if not container.streams.video:
                raise MediaDecodeError(f"{what} has no video stream", kind="empty")
            stream = container.streams.video[0]
            header = _header(container)
            begin, length = video_span(header, start, end, what)
            _check_frame_budget(header, length, max_source_frames, what)  # from metadata, before any decoding
            if length is None or not header.fps:
                return _decode_all(
                    container, stream, begin, length, max_source_frames, what, (num_frames, fps, max_frames)
                )
            count = max(1, round(length * header.fps))
            targets = _targets(begin, length, count, num_frames, fps, max_frames)
            try:
                return _frames_at(container, stream, targets)
            except MediaDecodeError as err:
                raise MediaDecodeError(f"{what}: {err.reason}", kind=err.kind) from None
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
    *,
    start: float | None = None,
    end: float | None = None,
    max_source_frames: int | None = None,
) -> list[Image.Image]:
    """Decodes a video and samples RGB frames (see the module conventions).

    Frames are taken at target times inside `[start, end)`: the decoder seeks to the keyframe before a target
    rather than decoding every frame, and converts only the frames it picks. Containers without a duration are
    decoded frame by frame over the span.

    Args:
        source: a file (bytes, path, file object) or a list of frames (PIL images or `[H, W(, C)]` uint8 arrays).
        num_frames (`int`, *optional*): frames to pick at the centres of equal segments; `None` = every frame (up
            to `max_frames`). Ignored when `fps` is given.
        fps (`float`, *optional*): pick one frame every `1 / fps` seconds instead (files only: a list of frames has
            no timing).
        max_frames (`int`, *optional*): never more frames than this.
        what (`str`, *optional*, defaults to `"video"`): how errors name the item.
        start (`float`, *optional*): seconds from the first frame where the span starts (files only).
        end (`float`, *optional*): seconds where it ends (defaults to the end of the video).
        max_source_frames (`int`, *optional*): refuse a span longer than this many frames (from the container's
            duration and frame rate, before decoding).

    Returns:
        `list[PIL.Image.Image]`: RGB frames in time order.

    Raises:
        `MediaDecodeError`: unreadable file, no video stream, no frame, a bad span (`kind="span"`), a span over
        `max_source_frames` (`kind="too_long"`); `ValueError` for `num_frames < 1`.
    """
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"give num_frames >= 1 or fps, got num_frames={num_frames}, fps={fps}")
    if isinstance(source, (list, tuple)):
        if not source:
            raise MediaDecodeError(f"{what} has no frames", kind="empty")
        if start is not None or end is not None:
            raise MediaDecodeError(
                f"{what} is a list of frames, which has no timing for a start/end span", kind="span",
                hint="give the video file, or cut the frames yourself",
            )  # fmt: skip
        times = np.arange(len(source), dtype=np.float64)
        picked = _pick(times, float(len(source)), num_frames, None, max_frames)
        return [decode_image(source[i], what=f"frame {i} of {what}") for i in picked]
    return _decode_video_file(source, what, num_frames, fps, max_frames, start, end, max_source_frames)


def decode_video_audio(
    source: Any,
    sampling_rate: int,
    *,
    start: float | None = None,
    end: float | None = None,
    missing: str = "error",
    max_seconds: float | None = None,
    what: str = "video",
) -> np.ndarray:
    """Decodes the sound of a video file over the span `[start, end)` to mono float32 `[samples]` at `sampling_rate`.

    Args:
        source: the video file (bytes, path, file object).
        sampling_rate (`int`): the rate to return (the audio tower's).
        start (`float`, *optional*), end (`float`, *optional*): the span, in seconds from the first video frame, as
            given to [`decode_video`] (so the sound covers the sampled frames).
        missing (`str`, *optional*, defaults to `"error"`): a video without an audio stream raises (`"error"`) or
            gives silence of the span's length (`"silence"`).
        max_seconds (`float`, *optional*): refuse a span longer than this (checked from the container, before
            decoding): the audio tower hears a fixed window, and a longer clip would be cut without a word.
        what (`str`, *optional*, defaults to `"video"`): how errors name the item.

    Raises:
        `MediaDecodeError`: `kind` `"no_audio"` (no audio stream and `missing="error"`), `"too_long"`, `"span"`,
        `"unreadable"`, `"empty"`.
    """
    if missing not in ("error", "silence"):
        raise ValueError(f"missing must be 'error' or 'silence', got {missing!r}")
    av = _require("av", "video sound")
    try:
        with av.open(_stream(source)) as container:
            if not container.streams.video:
                raise MediaDecodeError(f"{what} has no video stream", kind="empty")
            header = _header(container)
            begin, length = video_span(header, start, end, what)
            if length is not None and max_seconds is not None and length > max_seconds + 1e-6:
                raise MediaDecodeError(
                    f"the sound of {what} lasts {length:.2f} s; the audio tower hears at most {max_seconds:g} s",
                    kind="too_long",
                    hint=f"give a start/end span of at most {max_seconds:g} s, or do not ask for its audio",
                )
            if not header.has_audio:
                if missing == "silence":
                    return np.zeros(max(1, round((length or 0.0) * sampling_rate)), np.float32)
                raise MediaDecodeError(
                    f"{what} has no audio stream, but its sound was asked for",
                    kind="no_audio",
                    hint='give a video with sound, set "audio": false for it, or "missing_audio": "silence"',
                )
            samples, rate = _audio_span(av, container, begin, length)
    except MediaDecodeError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as err:
        raise MediaDecodeError(f"cannot decode the sound of {what}: {type(err).__name__}: {err}") from None
    if samples.size == 0:
        raise MediaDecodeError(f"{what} has no sound in its span", kind="empty")
    return decode_audio(samples, sampling_rate, source_rate=rate, what=f"sound of {what}")


def _audio_span(av, container, begin: float, length: float | None) -> tuple[np.ndarray, int]:
    """Samples `[channels, samples]` of the first audio stream over `[begin, begin + length)` seconds."""
    stream = container.streams.audio[0]
    if begin > 0:
        container.seek(max(0, int(begin / float(stream.time_base))), stream=stream, backward=True)
    resampler = av.AudioResampler(format="fltp")  # planar float at the stream's own rate and layout
    rate = int(stream.rate)
    stop = begin + length if length is not None else None
    chunks, first_time = [], None
    for frame in container.decode(stream):
        if frame.time is not None and stop is not None and float(frame.time) >= stop:
            break
        for out in resampler.resample(frame):
            if first_time is None:
                first_time = float(frame.time) if frame.time is not None else 0.0
            chunks.append(out.to_ndarray())
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray())
    if not chunks:
        return np.zeros((1, 0), np.float32), rate
    samples = np.concatenate(chunks, axis=1).astype(np.float32)
    skip = max(0, round((begin - (first_time or 0.0)) * rate))  # the seek lands on the frame before `begin`
    take = round(length * rate) if length is not None else None
    samples = samples[:, skip:]
    return (samples[:, :take] if take is not None else samples), rate


__all__ = [
    "MAX_AUDIO_CHANNELS",
    "SEEK_AHEAD_SECONDS",
    "AudioHeader",
    "MediaDecodeError",
    "VideoClip",
    "VideoHeader",
    "audio_to_mono",
    "decode_audio",
    "decode_image",
    "decode_video",
    "decode_video_audio",
    "open_image",
    "probe_audio",
    "probe_video",
    "read_audio",
    "to_rgb",
    "video_span",
]
