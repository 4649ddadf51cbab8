"""Loaders: local JSONL / JSON / Parquet files and folders, WebDataset tar shards, and `datasets` sources.

`iter_records` yields raw records with their location (file and line); `iter_samples` turns them into canonical
samples (see `formats.py`), resolves relative media paths, applies metadata filters and the bad-data policy.
Local JSONL is read line by line here rather than through `datasets`, so that one invalid line is reported as
`file:line` and can be skipped instead of failing the whole file.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .errors import DataError
from .formats import normalize_record
from .media import decode_sample_media, resolve_media_paths
from .policy import SkipReport, check_on_error, handle_error
from .validate import DataErrorAt, RecordChecks, parse_jsonl_line

FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".tar", ".tar.gz", ".tgz")
IMAGE_EXTS = {"jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"}
AUDIO_EXTS = {"wav", "flac", "mp3", "ogg", "opus", "m4a"}
VIDEO_EXTS = {"mp4", "webm", "avi", "mkv", "mov"}
TEXT_EXTS = {"txt", "text", "caption"}


class RecordRef(NamedTuple):
    """A raw record (or the error that replaced it) with where it came from."""

    record: dict | None
    source: str
    line: int | None
    media_root: str | None
    error: DataError | None = None


@dataclass
class RecordFilter:
    """Metadata filters applied to canonical samples (records that fail are filtered, not skipped as errors).

    Args:
        min_quality_score (`float`, *optional*): keep samples with `metadata.quality_score >= this`.
        keep_missing_score (`bool`, *optional*, defaults to True): keep samples that have no `quality_score`.
        sources (`set[str]`, *optional*): keep only these `metadata.source` values.
        kinds (`set[str]`, *optional*): keep only `pretrain` and/or `instruct` samples.
    """

    min_quality_score: float | None = None
    keep_missing_score: bool = True
    sources: set[str] | None = None
    kinds: set[str] | None = None
    filtered: int = field(default=0, compare=False)

    def __call__(self, sample: dict) -> bool:
        keep = self._keep(sample)
        self.filtered += not keep
        return keep

    def _keep(self, sample: dict) -> bool:
        meta = sample.get("metadata") or {}
        if self.min_quality_score is not None:
            score = meta.get("quality_score")
            if score is None:
                if not self.keep_missing_score:
                    return False
            elif float(score) < self.min_quality_score:
                return False
        if self.sources is not None and meta.get("source") not in self.sources:
            return False
        return self.kinds is None or sample["kind"] in self.kinds


# --------------------------------------------------------------------------------------------- local files


_CHECK_BATCH = 256  # records read ahead so their media checks run together on the checks' thread pool


def _iter_jsonl(path: Path, media_root: str | None, checks: RecordChecks | None = None) -> Iterator[RecordRef]:
    # Binary mode: a line that is not UTF-8 becomes one located error instead of ending the whole read.
    with open(path, "rb") as f:
        batch = []
        for number, raw in enumerate(f, start=1):
            if raw.strip():
                batch.append((number, raw))
            if len(batch) == _CHECK_BATCH:
                yield from _jsonl_batch(path, media_root, batch, checks)
                batch = []
        yield from _jsonl_batch(path, media_root, batch, checks)


def _jsonl_batch(path: Path, media_root, batch: list[tuple[int, bytes]], checks) -> list[RecordRef]:
    parsed = [(number, raw, *parse_jsonl_line(raw, str(path), number)) for number, raw in batch]
    jobs = [
        {"record": record, "source": str(path), "line": number, "media_root": media_root, "text": _text(raw)}
        for number, raw, record, error in parsed
        if error is None
    ]
    found = iter(checks.map(jobs) if checks is not None else [None] * len(jobs))
    refs = []
    for number, _, record, error in parsed:
        error = next(found) if error is None else error
        refs.append(RecordRef(record if error is None else None, str(path), number, media_root, error))
    return refs


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _checked(refs: Iterator[RecordRef], checks: RecordChecks | None) -> Iterator[RecordRef]:
    """Apply `checks` to the records of a reader that has no line text (JSON, Parquet, tar, `datasets`)."""
    if checks is None:
        yield from refs
        return
    batch = []
    for ref in refs:
        batch.append(ref)
        if len(batch) == _CHECK_BATCH:
            yield from _checked_batch(batch, checks)
            batch = []
    yield from _checked_batch(batch, checks)


def _checked_batch(batch: list[RecordRef], checks: RecordChecks) -> list[RecordRef]:
    todo = [ref for ref in batch if ref.error is None]
    jobs = [{"record": r.record, "source": r.source, "line": r.line, "media_root": r.media_root} for r in todo]
    errors = dict(zip(map(id, todo), checks.map(jobs)))
    return [
        RecordRef(None, r.source, r.line, r.media_root, errors[id(r)]) if errors.get(id(r)) is not None else r
        for r in batch
    ]


def _iter_json(path: Path, media_root: str | None) -> Iterator[RecordRef]:
    hint = "fix the file; a .json file must hold one JSON array of records (use .jsonl for one per line)"
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        if isinstance(err, UnicodeDecodeError):
            before = raw[: err.start].decode("utf-8", "replace")
            line, column = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
            reason = f"invalid UTF-8 (byte 0x{raw[err.start]:02x} at line {line}, column {column})"
        elif isinstance(err, json.JSONDecodeError):
            line, column = err.lineno, err.colno
            reason = f"invalid JSON ({err.msg} at line {line}, column {column})"
        else:
            line, column, reason = 1, 1, "invalid JSON (nested too deeply to parse)"
        error = DataErrorAt(reason, column=column, source=str(path), line=line, sample_id=str(path), hint=hint)
        yield RecordRef(None, str(path), line, media_root, error)
        return
    if isinstance(data, dict):
        data = [data]
    for number, record in enumerate(data, start=1):
        yield RecordRef(record, str(path), number, media_root)


def _iter_parquet(path: Path, media_root: str | None) -> Iterator[RecordRef]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
        for record in batch.to_pylist():
            number += 1
            yield RecordRef(record, str(path), number, media_root)


def _split_member_name(name: str) -> tuple[str, str]:
    """WebDataset keys: `dir/abc.001.jpg` -> (`dir/abc`, `001.jpg`): the key ends at the basename's first dot."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower() if dot else ""


def _webdataset_record(path: Path, key: str, members: dict[str, bytes]) -> dict:
    """Build one record from a WebDataset sample group: `.json` (record or metadata), `.txt`, media members."""
    record: dict[str, Any] = {}
    if "json" in members:
        try:
            payload = json.loads(members["json"].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(
                f"member {key}.json is not valid JSON: {err}", source=str(path), sample_id=key, hint="fix the shard"
            ) from err
        if isinstance(payload, dict) and {"text", "conversations", "messages"} & payload.keys():
            record = payload
        else:
            record = {"metadata": payload if isinstance(payload, dict) else {"value": payload}}
    record.setdefault("id", key)
    if not {"text", "conversations", "messages"} & record.keys():
        text_ext = next((e for e in members if e in TEXT_EXTS), None)
        if text_ext is not None:
            record["text"] = members[text_ext].decode("utf-8").strip()

    def media(exts: set[str]) -> list[dict]:
        return [
            {"bytes": data, "path": f"{path}/{key}.{ext}"}
            for ext, data in members.items()
            if ext.split(".")[-1] in exts
        ]

    for single, plural, exts in (
        ("image", "images", IMAGE_EXTS),
        ("audio", "audios", AUDIO_EXTS),
        ("video", "videos", VIDEO_EXTS),
    ):
        found = media(exts)
        if found and record.get(single) is None and record.get(plural) is None:
            record[plural] = found
    return record


def _iter_tar(path: Path, media_root: str | None) -> Iterator[RecordRef]:
    def flush(key: str, members: dict[str, bytes], number: int) -> RecordRef:
        try:
            return RecordRef(_webdataset_record(path, key, members), str(path), number, media_root)
        except DataError as err:
            return RecordRef(None, str(path), number, media_root, err.located(line=number))
        except (UnicodeDecodeError, RecursionError) as err:  # a .txt member that is not UTF-8, a too-deep .json
            error = DataError(f"sample {key} cannot be read: {type(err).__name__}", hint="fix the shard")
            return RecordRef(None, str(path), number, media_root, error.located(source=str(path), line=number))

    key, members, number = None, {}, 0
    try:
        with tarfile.open(path, "r|*") as tar:  # streaming mode: shards are read front to back, never seeked
            for member in tar:
                if not member.isfile():
                    continue
                member_key, ext = _split_member_name(member.name)
                if member_key != key and key is not None:
                    number += 1
                    yield flush(key, members, number)
                    members = {}
                key = member_key
                members[ext] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        error = DataError(f"cannot read tar shard: {err}", source=str(path), sample_id=key, hint="re-write the shard")
        yield RecordRef(None, str(path), number + 1, media_root, error)
        return
    if key is not None:
        yield flush(key, members, number + 1)


_READERS = {".jsonl": _iter_jsonl, ".json": _iter_json, ".parquet": _iter_parquet}


def _reader_for(path: Path):
    name = path.name.lower()
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        return _iter_tar
    return _READERS.get(path.suffix.lower())


def list_data_files(path: str | os.PathLike) -> list[Path]:
    """The data files under a folder (recursive, sorted), or the file itself."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _reader_for(p) is not None)
        if not files:
            raise DataError(f"no data files ({', '.join(FILE_SUFFIXES)}) under {path}", source=str(path))
        return files
    if _reader_for(path) is None:
        raise DataError(f"unsupported file type {path.suffix!r}", source=str(path), hint=f"use one of {FILE_SUFFIXES}")
    return [path]


# ------------------------------------------------------------------------------------- datasets sources


def _iter_hf(dataset: Iterable, name: str, media_root: str | None) -> Iterator[RecordRef]:
    for index, record in enumerate(dataset):
        yield RecordRef(dict(record), name, index, media_root)


def _is_local(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike)) and os.path.exists(source)


def iter_records(
    source: Any,
    *,
    media_root: str | os.PathLike | None = None,
    split: str = "train",
    streaming: bool = False,
    checks: RecordChecks | None = None,
    **load_dataset_kwargs,
) -> Iterator[RecordRef]:
    """Yield raw records with their location from any supported source.

    Args:
        source: a `.jsonl` / `.json` / `.parquet` / `.tar` file, a folder of them, a list of dicts, a
            `datasets.Dataset` / `IterableDataset`, or a name/path for `datasets.load_dataset`.
        media_root (`str`, *optional*): folder that relative media paths start from. Defaults to each local
            file's own folder; for other sources, the working directory.
        split (`str`, *optional*, defaults to `"train"`): split for `load_dataset`.
        streaming (`bool`, *optional*, defaults to False): stream from `load_dataset` instead of downloading.
        checks (`RecordChecks`, *optional*): checks run on each record as it is read (media existence and headers,
            confinement to the media root); a record that fails comes with its `error` set.
        **load_dataset_kwargs: passed to `datasets.load_dataset` (e.g. `name`, `data_files`).
    """
    root = str(media_root) if media_root is not None else None
    if _is_local(source) and (Path(source).is_dir() or _reader_for(Path(source)) is not None):
        for path in list_data_files(source):
            reader, file_root = _reader_for(path), root if root is not None else str(path.parent)
            if reader is _iter_jsonl:
                yield from _iter_jsonl(path, file_root, checks)
            else:
                yield from _checked(reader(path, file_root), checks)
        return
    if isinstance(source, list):
        yield from _checked(_iter_hf(source, "<list>", root), checks)
        return
    if isinstance(source, (str, os.PathLike)):
        if str(source).lower().endswith(FILE_SUFFIXES):  # looks like a local file that is not there
            raise DataError("file not found", source=str(source), hint="check the path")
        import datasets

        source = datasets.load_dataset(str(source), split=split, streaming=streaming, **load_dataset_kwargs)
    name = getattr(getattr(source, "info", None), "dataset_name", None) or type(source).__name__
    yield from _checked(_iter_hf(source, name, root), checks)


def normalize_ref(ref: RecordRef) -> dict:
    """Canonical sample for a `RecordRef`, with media paths resolved; raises the ref's `DataError` if it has one."""
    if ref.error is not None:
        raise ref.error
    sample = normalize_record(ref.record, source=ref.source, line=ref.line)
    return resolve_media_paths(sample, ref.media_root)


def iter_samples(
    source: Any,
    *,
    media_root: str | os.PathLike | None = None,
    record_filter: RecordFilter | None = None,
    on_error: str = "raise",
    report: SkipReport | None = None,
    decode: bool = False,
    sampling_rate: int = 16_000,
    num_frames: int | None = 8,
    **iter_kwargs,
) -> Iterator[dict]:
    """Yield canonical samples from `source` (see `iter_records`), applying filters and the bad-data policy.

    Args:
        record_filter (`RecordFilter`, *optional*): metadata filters, e.g. `RecordFilter(min_quality_score=0.5)`.
        on_error (`str`, *optional*, defaults to `"raise"`): `"raise"` or `"skip"` (recorded in `report`).
        report (`SkipReport`, *optional*): where skips are counted.
        decode (`bool`, *optional*, defaults to False): decode media (PIL images, float32 audio, video frames).
    """
    check_on_error(on_error)
    for ref in iter_records(source, media_root=media_root, **iter_kwargs):
        try:
            sample = normalize_ref(ref)
            if record_filter is not None and not record_filter(sample):
                continue
            if decode:
                sample = decode_sample_media(
                    sample, sampling_rate=sampling_rate, num_frames=num_frames, source=ref.source, line=ref.line
                )
        except DataError as err:
            handle_error(err, on_error, report)
            continue
        yield sample


__all__ = [
    "RecordFilter",
    "RecordRef",
    "iter_records",
    "iter_samples",
    "list_data_files",
    "normalize_ref",
]
