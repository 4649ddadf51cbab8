"""Record media: read what records hold (paths, bytes, `{"bytes", "path"}` dicts), resolve relative paths, and hand
the bytes to the shared decoder, `openmind_hf.processing.media_decoding` (its conventions: RGB images, mono float32
audio from `[samples]` / `[channels, samples]` arrays, frames at segment centres).

Every reader takes a path, raw bytes, a `{"bytes", "path"}` dict (HF `Image`/`Audio` columns with `decode=False`,
WebDataset members), an HF decoded audio dict `{"array", "sampling_rate"}`, or an already decoded object. Anything
unusable (missing, 0-byte, remote, truncated, corrupt, empty) raises `DataError` naming the item and what to do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..processing.media_decoding import (
    MediaDecodeError,
    VideoClip,
    decode_audio,
    decode_image,
    decode_video,
    decode_video_audio,
)
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


_HINTS = {
    "too_long": "cut it to a shorter span (start/end) or raise the limit",
    "unreadable": "the file is corrupt, truncated or in an unsupported format; replace or convert it",
    "empty": "remove the record or fix the file",
}


def _data_error(err: MediaDecodeError) -> DataError:
    """The decoder's error as a `DataError` (located later by `decode_sample_media`), with what to do about it."""
    return DataError(err.reason, hint=err.hint or _HINTS.get(err.kind))


# ------------------------------------------------------------------------------------------------ images


def load_image(item: Any):
    """Decode an image to an RGB `PIL.Image.Image` (EXIF rotation applied; CMYK/16-bit/palette/alpha converted).

    Args:
        item: a path, bytes, a `{"bytes", "path"}` dict, a `PIL.Image.Image` or an `[H, W(, C)]` uint8 array.

    Raises:
        `DataError`: missing, 0-byte, truncated or corrupt file, or an image with no pixels.
    """
    from PIL import Image

    source = item if isinstance(item, (Image.Image, np.ndarray)) else _read_bytes(item, "image")
    try:
        return decode_image(source, what=f"image {_describe(item)}")
    except MediaDecodeError as err:
        raise _data_error(err) from err


# ------------------------------------------------------------------------------------------------- audio


def load_audio(item: Any, sampling_rate: int = DEFAULT_SAMPLING_RATE, max_seconds: float | None = None) -> np.ndarray:
    """Decode audio to a mono float32 `[num_samples]` array at `sampling_rate` (resampled with soxr).

    Args:
        item: a path, bytes, a `{"bytes", "path"}` dict, an HF decoded `{"array", "sampling_rate"}` dict, or a
            float array already at `sampling_rate`, `[samples]` or `[channels, samples]`.
        sampling_rate (`int`, *optional*, defaults to 16000): the rate the audio encoder expects.
        max_seconds (`float`, *optional*): refuse longer clips (a file's header is checked before decoding).

    Raises:
        `DataError`: missing, 0-byte, unreadable or empty audio, non-finite samples, or an array laid out
        `[samples, channels]`.
    """
    decoded = (isinstance(item, dict) and item.get("array") is not None) or isinstance(item, (np.ndarray, list))
    source = item if decoded else _read_bytes(item, "audio")
    try:
        return decode_audio(source, sampling_rate, what=f"audio {_describe(item)}", max_seconds=max_seconds)
    except MediaDecodeError as err:
        raise _data_error(err) from err


# ------------------------------------------------------------------------------------------------- video


def load_video_frames(
    item: Any,
    num_frames: int | None = 8,
    fps: float | None = None,
    max_frames: int = 64,
    *,
    use_audio_in_video: bool = False,
    sampling_rate: int = DEFAULT_SAMPLING_RATE,
    max_source_frames: int | None = None,
) -> list | VideoClip:
    """Decode a video and sample RGB frames: `num_frames` at the centres of equal segments, or one every `1 / fps`
    seconds (never more frames than the video has), inside its `[start, end)` span; with its sound when asked.

    Args:
        item: a path, bytes, a `{"bytes" | "path", "start"?, "end"?, "audio"?, "missing_audio"?}` dict (times in
            seconds; `"audio": true` hears the video; `"missing_audio": "silence"` gives silence to a video
            without an audio stream instead of an error), or an already decoded list of frames (returned as RGB).
        num_frames (`int`, *optional*, defaults to 8): frames to sample evenly (ignored when `fps` is given).
        fps (`float`, *optional*): sample at this rate instead, up to `max_frames`.
        max_frames (`int`, *optional*, defaults to 64): cap on the frames returned.
        use_audio_in_video (`bool`, *optional*, defaults to False): hear videos whose item does not say `"audio"`.
        sampling_rate (`int`, *optional*, defaults to 16000): the rate of the sound.
        max_source_frames (`int`, *optional*): refuse a span longer than this many frames (from the container,
            before decoding).

    Returns:
        `list[PIL.Image.Image]`: the frames, in time order; a `VideoClip` (frames + sound of the same span) when the
        video is heard.

    Raises:
        `DataError`: missing/0-byte/unreadable file, no video stream, no decodable frame, a bad span, a span over
        the frame limit, or no audio stream when its sound was asked for.
    """
    if isinstance(item, (list, tuple)):
        return [load_image(frame) for frame in item]
    if fps is None and (num_frames is None or num_frames < 1):
        raise ValueError(f"give num_frames >= 1 or fps, got num_frames={num_frames}, fps={fps}")
    span = item if isinstance(item, dict) else {}
    data = _read_bytes(item, "video")
    what = f"video {_describe(item)}"
    try:
        frames = decode_video(
            data, num_frames, fps, max_frames, what=what,
            start=span.get("start"), end=span.get("end"), max_source_frames=max_source_frames,
        )  # fmt: skip
        if not span.get("audio", use_audio_in_video):
            return frames
        sound = decode_video_audio(
            data, sampling_rate, start=span.get("start"), end=span.get("end"),
            missing=span.get("missing_audio", "error"), what=what,
        )  # fmt: skip
        return VideoClip(frames, sound, sampling_rate)
    except MediaDecodeError as err:
        raise _data_error(err) from err


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
    use_audio_in_video: bool = False,
    source: str | None = None,
    line: int | None = None,
) -> dict:
    """Return a copy of a canonical sample whose media are decoded (PIL images, float32 arrays, lists of frames, and
    `VideoClip`s for videos that are heard: their own `"audio": true`, or `use_audio_in_video`).

    Raises:
        `DataError`: naming `source`, `line`, the sample id and the media item that failed.
    """
    decoded = dict(sample)
    try:
        decoded["images"] = [load_image(item) for item in sample.get("images") or []]
        decoded["audios"] = [load_audio(item, sampling_rate) for item in sample.get("audios") or []]
        decoded["videos"] = [
            load_video_frames(
                item, num_frames, fps, use_audio_in_video=use_audio_in_video, sampling_rate=sampling_rate
            )
            for item in sample.get("videos") or []
        ]
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
