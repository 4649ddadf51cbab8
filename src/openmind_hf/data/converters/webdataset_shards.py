"""LAION / CC12M as img2dataset WebDataset shards -> our WebDataset shards, streamed member by member.

LAION and CC12M are distributed as URL lists; `img2dataset --output_format webdataset` turns them into `.tar` shards
holding, per sample, `{key}.jpg`, `{key}.txt` (the caption) and `{key}.json` (`url`, `caption`, `status`, sizes, and
LAION's `similarity` when `--save_additional_columns '["similarity"]'` kept it). Those shards are the input here:
local files, a folder of them, or http(s) URLs (a brace range like `{00000..00099}.tar` names many).

Each input shard is read front to back (tar streaming mode: no extraction, nothing seeked, so a URL is never fully
downloaded first) and written as one output shard under `pretrain_train/`, holding per sample the original image
bytes and a `{key}.json` pretraining record whose `metadata.quality_score` is the upstream similarity, which is
what `RecordFilter(min_quality_score=...)` reads. `iter_samples` streams those shards as they are. A sample whose
image does not decode, whose JSON is broken or that has no caption is counted as invalid with `shard:member`.
"""

from __future__ import annotations

import io
import json
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from ..errors import DataError
from ..loading import IMAGE_EXTS, _split_member_name
from ..media import load_image
from .common import count_invalid

# Keys of the img2dataset metadata that hold a quality score, in order of preference.
SCORE_KEYS = ("quality_score", "similarity", "clip_score")
_KEPT_METADATA = ("url", "width", "height", "original_width", "original_height", "similarity", "punsafe", "pwatermark")


def shard_locations(input_dir: str | Path) -> list[str]:
    """The shards to read: a local `.tar`, every `.tar` under a folder, or http(s) URL(s) with a brace range."""
    text = str(input_dir)
    if text.startswith(("http://", "https://")):
        if "{" not in text:
            return [text]
        try:
            from braceexpand import braceexpand  # comes with webdataset (the `train` extra)
        except ImportError as err:
            raise DataError(
                f"shard URL pattern {text} needs the braceexpand package",
                hint="pip install 'openmind-hf[train]' (or braceexpand), or download the shards and pass their folder",
            ) from err
        return list(braceexpand(text))
    path = Path(input_dir)
    shards = [str(path)] if path.is_file() else sorted(str(p) for p in path.rglob("*.tar"))
    if not shards:
        raise DataError(
            f"no .tar shards under {path}",
            source=str(path),
            hint="make them with `img2dataset --output_format webdataset`, then pass that folder (or shard URLs) as --input",
        )
    return shards


def _open(location: str):
    if location.startswith(("http://", "https://")):
        return urllib.request.urlopen(location, timeout=60)
    return open(location, "rb")


def _samples(location: str, counts: dict) -> Iterator[tuple[str, dict[str, bytes]]]:
    """`(key, {extension: bytes})` per sample; a shard cut short is counted once and ends the shard."""
    key, members, last = None, {}, None
    try:
        with _open(location) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                member_key, ext = _split_member_name(member.name)  # the loader's rule for WebDataset keys
                if member_key != key and key is not None:
                    yield key, members
                    members = {}
                key, last = member_key, member.name
                members[ext] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        count_invalid(counts, f"{location}:{last or '<start>'}: shard unreadable at or after this member ({err})")
        return  # the partial sample at the cut is dropped: its members may be incomplete
    if key is not None:
        yield key, members


def _record(location: str, key: str, members: dict[str, bytes], source: str) -> tuple[str, bytes, dict]:
    """(image extension, image bytes, record) for one sample; `DataError` says which member is bad."""
    where = f"{location}:{key}"
    meta: dict = {}
    if "json" in members:
        try:
            meta = json.loads(members["json"].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"{where}.json is not valid JSON ({err})") from err
    if meta.get("status", "success") != "success":
        raise DataError(f"{where}: img2dataset status {meta.get('status')!r}")
    ext = next((e for e in members if e in IMAGE_EXTS), None)
    if ext is None:
        raise DataError(f"{where}: no image member (have {sorted(members)})")
    try:
        load_image(members[ext])  # full decode: truncated JPEGs pass a header check
    except DataError as err:
        raise DataError(f"{where}.{ext}: {err.reason}") from err
    caption = members["txt"].decode("utf-8", "replace") if "txt" in members else meta.get("caption") or ""
    if not caption.strip():
        raise DataError(f"{where}: no caption (.txt member or 'caption' in the .json)")
    metadata = {"source": source, "shard": Path(location).name, **{k: meta[k] for k in _KEPT_METADATA if k in meta}}
    score = next((meta[k] for k in SCORE_KEYS if meta.get(k) is not None), None)
    if score is not None:
        metadata["quality_score"] = float(score)
    record = {"id": f"{source}-{Path(location).stem}-{key}", "text": " ".join(caption.split()), "metadata": metadata}
    return ext, members[ext], record


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # mtime 0: the same input gives the same shard
    tar.addfile(info, io.BytesIO(data))


def convert_shards(
    input_dir: str | Path,
    output_dir: Path,
    limit: int | None = None,
    media_dir: Path | None = None,
    source: str = "laion",
) -> dict:
    """Stream every input shard into `output_dir/pretrain_train/{shard}.tar` (at most `limit` samples in all)."""
    counts: dict = {"pretrain_train": 0, "shards": 0, "invalid": 0, "invalid_examples": []}
    folder = Path(output_dir) / "pretrain_train"
    folder.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for location in shard_locations(input_dir):
        if limit is not None and counts["pretrain_train"] >= limit:
            break
        name = Path(location).stem
        name = name if name not in used else f"{name}-{len(used)}"  # same shard names from two folders
        used.add(name)
        target = folder / f"{name}.tar"
        partial = target.with_name(target.name + ".part")  # a crash leaves no half shard the loader would read
        with tarfile.open(partial, "w") as tar:
            for key, members in _samples(location, counts):
                if limit is not None and counts["pretrain_train"] >= limit:
                    break
                try:
                    ext, image, record = _record(location, key, members, source)
                except DataError as err:
                    count_invalid(counts, str(err))
                    continue
                _add(tar, f"{key}.{ext}", image)
                _add(tar, f"{key}.json", json.dumps(record, ensure_ascii=False).encode("utf-8"))
                counts["pretrain_train"] += 1
        partial.replace(target)
        counts["shards"] += 1
    return counts


def convert_laion(input_dir, output_dir: Path, limit: int | None = None, media_dir: Path | None = None) -> dict:
    return convert_shards(input_dir, output_dir, limit, media_dir, source="laion")


def convert_cc12m(input_dir, output_dir: Path, limit: int | None = None, media_dir: Path | None = None) -> dict:
    return convert_shards(input_dir, output_dir, limit, media_dir, source="cc12m")


__all__ = ["SCORE_KEYS", "convert_cc12m", "convert_laion", "convert_shards", "shard_locations"]
