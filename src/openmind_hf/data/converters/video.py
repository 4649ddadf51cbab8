"""Video-text sets -> pretraining JSONL whose `video` is a clip of a file: `{"path", "start", "end"}` (seconds).

- WebVid (`results_2M_{train,val}.csv`, columns `videoid, contentUrl, duration, page_dir, name`): one stock clip per
  row, captioned by its title (`name`); `duration` is ISO 8601 (`PT00H00M21S`). The clips are downloaded by hand
  (the original download script writes `{page_dir}/{videoid}.mp4`), so a record's span is the whole clip.
- HowTo100M (`raw_caption.json` or `caption.json`: `{video_id: {"start": [...], "end": [...], "text": [...]}}`):
  YouTube videos with ASR caption segments; one record per segment, its span the segment's times. The videos are
  `{video_id}.mp4` (or `.webm`, `.mkv`) under the media folder.

The span form `{"path", "start", "end"}` is accepted by the record normalizer as it is (a video item may be a dict
with a `path`), and relative paths are resolved like plain ones; the original URL stays in `metadata.url`.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ..errors import DataError
from .common import Remote, count_invalid, find_file, load_json, media_path, write_jsonl

WEBVID_REMOTES = (Remote("results_2M_val.csv", url="http://www.robots.ox.ac.uk/~maxbain/webvid/results_2M_val.csv"),)
HOWTO100M_REMOTES = (
    Remote("raw_caption.zip", url="https://www.rocq.inria.fr/cluster-willow/amiech/howto100m/raw_caption.zip"),
)
_ISO_DURATION = re.compile(r"^P(?:T)?(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$")
_VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv")


def parse_duration(value: str) -> float:
    """WebVid durations, `"PT00H00M21S"` -> `21.0` (plain numbers of seconds are accepted too)."""
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    match = _ISO_DURATION.match(text)
    if match is None or not any(match.groups()):
        raise ValueError(f"duration {value!r} is neither seconds nor ISO 8601 like 'PT00H00M21S'")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return 3600 * hours + 60 * minutes + seconds


def video_span(path: str, start: float, end: float) -> dict:
    """The record form of a clip of a video file: `{"path", "start", "end"}`, times in seconds from its start."""
    return {"path": path, "start": round(float(start), 3), "end": round(float(end), 3)}


def convert_webvid(input_dir: Path, output_dir: Path, limit: int | None = None, media_dir: Path | None = None) -> dict:
    """Every `results_*.csv` -> `pretrain_{split}.jsonl`; rows with no caption or a bad duration are counted."""
    files = sorted(Path(input_dir).rglob("results_*.csv"))
    if not files:
        raise DataError(
            f"no WebVid results_*.csv under {input_dir}",
            source=str(input_dir),
            hint="download results_2M_val.csv (or _train) into that folder",
        )
    counts: dict = {"invalid": 0, "invalid_examples": []}
    for path in files:
        split = "val" if "_val" in path.stem else "train"
        root = media_dir or path.parent
        counts[f"pretrain_{split}"] = write_jsonl(
            output_dir / f"pretrain_{split}.jsonl", _webvid_records(path, root, output_dir, counts), limit
        )
    return counts


def _webvid_records(path: Path, root: Path, output_dir: Path, counts: dict):
    with open(path, encoding="utf-8", newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):  # line 1 is the header
            try:
                caption = (row.get("name") or "").strip()
                if not caption:
                    raise ValueError("empty caption ('name')")
                duration = parse_duration(row["duration"])
                if duration <= 0:
                    raise ValueError(f"duration {row['duration']!r} is not positive")
                relative = f"{row['page_dir']}/{row['videoid']}.mp4"
            except (KeyError, ValueError, TypeError) as err:
                count_invalid(counts, f"{path}:{line}: {err}")
                continue
            yield {
                "id": f"webvid-{row['videoid']}",
                "text": caption,
                "video": video_span(media_path(root, relative, output_dir), 0.0, duration),
                "metadata": {"source": "webvid", "url": row.get("contentUrl"), "duration": duration},
            }


def convert_howto100m(
    input_dir: Path, output_dir: Path, limit: int | None = None, media_dir: Path | None = None
) -> dict:
    """`raw_caption.json` / `caption.json` -> `pretrain_train.jsonl`, one record per ASR segment."""
    path = find_file(input_dir, "raw_caption.json", "caption.json", what="HowTo100M caption JSON")
    captions = load_json(path)
    if not isinstance(captions, dict):
        raise DataError(
            f"expected an object {{video_id: {{start, end, text}}}}, got a {type(captions).__name__}",
            source=str(path),
            hint="is this HowTo100M's caption.json?",
        )
    root = Path(media_dir or path.parent)
    counts: dict = {"invalid": 0, "invalid_examples": []}
    records = _howto100m_records(path, captions, root, output_dir, counts)
    counts["pretrain_train"] = write_jsonl(output_dir / "pretrain_train.jsonl", records, limit)
    return counts


def _howto100m_video(root: Path, video_id: str) -> str:
    # The videos come as .mp4 or .webm depending on the downloader; take the one on disk, else the usual .mp4.
    found = next((f"{video_id}{s}" for s in _VIDEO_SUFFIXES if (root / f"{video_id}{s}").exists()), None)
    return found or f"{video_id}.mp4"


def _howto100m_records(path: Path, captions: dict, root: Path, output_dir: Path, counts: dict):
    for video_id, segments in captions.items():
        try:
            starts, ends, texts = segments["start"], segments["end"], segments["text"]
            if not len(starts) == len(ends) == len(texts):
                raise ValueError(f"{len(starts)} starts, {len(ends)} ends and {len(texts)} texts")
        except (KeyError, TypeError, ValueError) as err:
            count_invalid(counts, f"{path} (video {video_id!r}): bad segments: {err}")
            continue
        video = media_path(root, _howto100m_video(root, video_id), output_dir)
        for index, (start, end, text) in enumerate(zip(starts, ends, texts)):
            text = str(text).strip()
            try:
                if not text or not float(end) > float(start) >= 0:
                    raise ValueError(f"empty text or bad span [{start}, {end}]")
            except (TypeError, ValueError) as err:
                count_invalid(counts, f"{path} (video {video_id!r}, segment {index}): {err}")
                continue
            yield {
                "id": f"howto100m-{video_id}-{index}",
                "text": text,
                "video": video_span(video, start, end),
                "metadata": {"source": "howto100m", "video_id": video_id, "segment": index},
            }


__all__ = [
    "HOWTO100M_REMOTES",
    "WEBVID_REMOTES",
    "convert_howto100m",
    "convert_webvid",
    "parse_duration",
    "video_span",
]
