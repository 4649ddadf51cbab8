"""Media decoding: images to RGB `PIL.Image`, audio to mono float32 at 16 kHz, video to sampled RGB frames.

Every reader takes what records hold: a path, raw bytes, a `{"bytes", "path"}` dict (HF `Image`/`Audio` columns
with `decode=False`, WebDataset members), an HF decoded audio dict `{"array", "sampling_rate"}`, or an already
decoded object. Anything unusable (missing, 0-byte, truncated, corrupt, empty) raises `DataError`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

DEFAULT_SAMPLING_RATE = 16_000
_REMOTE_PREFIXES = ("http://", "https://", "s3://", "gs://", "hf://")


def _describe(item: Any) -> str:
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    if isinstance(item, dict) and item.get("path"):
        return str(item["path"])
    return f"<{type(item).__name__}>"


def _read_bytes(item: Any, what: str) -> bytes | str:
    """Return raw bytes, or a checked local path, for a path/bytes/dict media item."""
    if isinstance(item, dict):
        if item.get("bytes") is not None:
            item = item["bytes"]
        elif item.get("path"):
            item = item["path"]
        else:
            raise DataError(f"{what} entry {sorted(item)} has neither 'bytes' nor 'path'", hint="give a file path")
    if isinstance(item, (bytes, bytearray, memoryview)):
        if len(item) == 0:
            raise DataError(f"{what} data is empty (0 bytes)", hint="re-export the record with its media")
        return bytes(item)
    if isinstance(item, (str, os.PathLike)):
        path = str(item)
        if path.startswith(_REMOTE_PREFIXES):
            raise DataError(f"{what} {path} is a remote URL", hint="download the media and give local paths")
        if path.startswith("file://"):
            path = path[len("file://") :]
        if not os.path.exists(path):
            raise DataError(f"{what} file not found: {path}", hint="check the path or pass the right media_root")
        if os.path.getsize(path) == 0:
            raise DataError(f"{what} file is empty (0 bytes): {path}", hint="re-download or remove it")
        return path
    raise DataError(
        f"cannot read a {what} from a {type(item).__name__}", hint="give a path, bytes or a decoded object"
    )


# ------------------------------------------------------------------------------------------------ images


def _to_rgb(image):
    from ..processing.processing_openmind import to_rgb  # one conversion for the data path and the processor

    return to_rgb(image)


def load_image(item: Any):
    """Decode an image to an RGB `PIL.Image.Image` (EXIF rotation applied; CMYK/16-bit/palette/alpha converted).

    Args:
        item: a path, bytes, a `{"bytes", "path"}` dict, a `PIL.Image.Image` or an `[H, W(, C)]` uint8 array.

    Raises:
        `DataError`: missing, 0-byte, truncated or corrupt file, or an image with no pixels.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, Image.Image):
        image = item
    elif isinstance(item, np.ndarray):
        image = Image.fromarray(item)
    else:
        data = _read_bytes(item, "image")
        try:
            image = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
            image.load()  # decodes now: a truncated file fails here, not later inside a worker's collate
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise DataError(
                f"cannot decode image {_describe(item)}: {err}", hint="the file is corrupt or truncated; replace it"
            ) from err
    if image.width == 0 or image.height == 0:
        raise DataError(f"image {_describe(item)} has no pixels ({image.width}x{image.height})")
    try:
        return _to_rgb(image)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot convert image {_describe(item)} (mode {image.mode}) to RGB: {err}") from err


# ------------------------------------------------------------------------------------------------- audio


def _decode_audio_with_av(data: bytes | str, sampling_rate: int) -> np.ndarray:
    import av

    with av.open(io.BytesIO(data) if isinstance(data, bytes) else data) as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
        chunks = []
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):  # flush
            chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def load_audio(item: Any, sampling_rate: int = DEFAULT_SAMPLING_RATE) -> np.ndarray:
    """Decode audio to a mono float32 `[num_samples]` array at `sampling_rate` (resampled with soxr).

    Args:
        item: a path, bytes, a `{"bytes", "path"}` dict, an HF decoded `{"array", "sampling_rate"}` dict, or a
            float array already at `sampling_rate`.
        sampling_rate (`int`, *optional*, defaults to 16000): the rate the audio encoder expects.

    Raises:
        `DataError`: missing, 0-byte, unreadable or empty audio, or non-finite samples.
    """
    import soundfile as sf
    import soxr

    if isinstance(item, dict) and item.get("array") is not None:
        waveform, rate = np.asarray(item["array"], dtype=np.float32), int(item.get("sampling_rate") or sampling_rate)
    elif isinstance(item, (np.ndarray, list)):
        waveform, rate = np.asarray(item, dtype=np.float32), sampling_rate
    else:
        data = _read_bytes(item, "audio")
        try:
            waveform, rate = sf.read(
                io.BytesIO(data) if isinstance(data, bytes) else data, dtype="float32", always_2d=True
            )
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as sf_err:
            # Formats libsndfile cannot read (m4a, some mp3/ogg variants) go through ffmpeg via PyAV.
            try:
                waveform, rate = _decode_audio_with_av(data, sampling_rate), sampling_rate
            except Exception as av_err:  # noqa: BLE001 - any decoder failure means "unreadable"
                raise DataError(
                    f"cannot decode audio {_describe(item)}: {sf_err}; PyAV: {av_err}",
                    hint="the file is corrupt or in an unsupported format; convert it to wav/flac",
                ) from av_err
    if waveform.ndim == 2:  # [num_samples, channels] -> mono
        waveform = waveform.mean(axis=1) if waveform.shape[1] > 1 else waveform[:, 0]
    if waveform.ndim != 1:
        raise DataError(
            f"audio {_describe(item)} has shape {waveform.shape}, expected [samples] or [samples, channels]"
        )
    if waveform.size == 0:
        raise DataError(f"audio {_describe(item)} is empty (0 samples)", hint="remove the record or fix the file")
    if not np.all(np.isfinite(waveform)):
        raise DataError(f"audio {_describe(item)} contains NaN or inf samples")
    if rate != sampling_rate:
        waveform = soxr.resample(waveform, rate, sampling_rate, quality="HQ")
    return np.ascontiguousarray(waveform, dtype=np.float32)


# ------------------------------------------------------------------------------------------------- video


def _frame_times(duration: float, num_frames: int | None, fps: float | None, max_frames: int) -> np.ndarray:
    if fps is not None:
        times = np.arange(0.0, max(duration, 1e-6), 1.0 / fps)[:max_frames]
    else:
        # centres of num_frames equal segments: never the black first frame, never past the end
        times = (np.arange(num_frames) + 0.5) * duration / num_frames
    return times


def load_video_frames(item: Any, num_frames: int | None = 8, fps: float | None = None, max_frames: int = 64) -> list:
    """Decode a video and sample RGB frames: `num_frames` evenly spread, or one every `1 / fps` seconds.

    Args:
        item: a path, bytes, `{"bytes", "path"}` dict, or an already decoded list of frames (returned as RGB).
        num_frames (`int`, *optional*, defaults to 8): frames to sample evenly (ignored when `fps` is given).
        fps (`float`, *optional*): sample at this rate instead, up to `max_frames`.
        max_frames (`int`, *optional*, defaults to 64): cap for `fps` sampling.

    Returns:
        `list[PIL.Image.Image]`: the frames, in time order.

    Raises:
        `DataError`: missing/0-byte/unreadable file, no video stream, or no decodable frame.
    """
    import av

    if isinstance(item, (list, tuple)):
        return [load_image(frame) for frame in item]
    if fps is None and (num_frames is None or num_frames < 1):
        raise ValueError(f"give num_frames >= 1 or fps, got num_frames={num_frames}, fps={fps}")
    data = _read_bytes(item, "video")
    try:
        with av.open(io.BytesIO(data) if isinstance(data, bytes) else data) as container:
            if not container.streams.video:
                raise DataError(f"video {_describe(item)} has no video stream")
            stream = container.streams.video[0]
            # Decode once, keeping (time, frame) pairs: short clips are the norm here, and container durations
            # are often missing or wrong, which makes seeking unreliable.
            decoded = [(float(f.time or 0.0), f) for f in container.decode(stream)]
            if not decoded:
                raise DataError(f"video {_describe(item)} has no decodable frame")
            frame_step = decoded[1][0] - decoded[0][0] if len(decoded) > 1 else 0.0
            duration = decoded[-1][0] - decoded[0][0] + frame_step
            targets = decoded[0][0] + _frame_times(max(duration, 1e-6), num_frames, fps, max_frames)
            frame_times = np.array([t for t, _ in decoded])
            picked = np.minimum(np.searchsorted(frame_times, targets, side="right") - 1, len(decoded) - 1)
            return [decoded[max(i, 0)][1].to_image().convert("RGB") for i in picked]
    except DataError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise DataError(
            f"cannot decode video {_describe(item)}: {err}", hint="the file is corrupt; replace it"
        ) from err


# ------------------------------------------------------------------------------------------------ samples


def resolve_media_paths(sample: dict, media_root: str | os.PathLike | None) -> dict:
    """Make relative string paths in `images` / `audios` / `videos` absolute against `media_root` (in place)."""
    if media_root is None:
        return sample
    root = Path(media_root)

    def resolve(item):
        if isinstance(item, str) and not item.startswith(_REMOTE_PREFIXES) and not os.path.isabs(item):
            return str(root / item)
        if isinstance(item, dict) and item.get("bytes") is None and isinstance(item.get("path"), str):
            return {**item, "path": resolve(item["path"])}
        return item

    for key in ("images", "audios", "videos"):
        sample[key] = [resolve(item) for item in sample.get(key) or []]
    return sample


def decode_sample_media(
    sample: dict,
    *,
    sampling_rate: int = DEFAULT_SAMPLING_RATE,
    num_frames: int | None = 8,
    fps: float | None = None,
    source: str | None = None,
    line: int | None = None,
) -> dict:
    """Return a copy of a canonical sample whose media are decoded (PIL images, float32 arrays, lists of frames).

    Raises:
        `DataError`: naming `source`, `line`, the sample id and the media item that failed.
    """
    decoded = dict(sample)
    try:
        decoded["images"] = [load_image(item) for item in sample.get("images") or []]
        decoded["audios"] = [load_audio(item, sampling_rate) for item in sample.get("audios") or []]
        decoded["videos"] = [load_video_frames(item, num_frames, fps) for item in sample.get("videos") or []]
    except DataError as err:
        raise err.located(source=source, line=line, sample_id=sample.get("id")) from err
    return decoded


__all__ = [
    "DEFAULT_SAMPLING_RATE",
    "decode_sample_media",
    "load_audio",
    "load_image",
    "load_video_frames",
    "resolve_media_paths",
]
