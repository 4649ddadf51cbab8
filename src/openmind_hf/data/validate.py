"""Checks that run on each raw record as it is read, so bad data fails (or is counted) before the first step.

- `parse_jsonl_line`: bytes of one JSONL line -> a record, or a `DataError` naming `file:line:column` (invalid
  UTF-8, invalid JSON, JSON nested too deeply for the parser). It never raises anything else, so one bad line is one
  counted skip under `on_error="skip"`.
- `RecordChecks`: media existence and a cheap header check (PIL parses the header only, soundfile/PyAV read the
  container header; no pixel or sample is decoded), and an opt-in confinement of media paths to the media root.
- `text_chars` / `char_budget`: reject records whose text is far longer than `max_length` could ever hold, by
  character count, before anything is tokenized.

Media paths outside the media root: by default a relative path resolves against the media root and an absolute
path (or a symlink) is used as given, wherever it points; this is what local training on one's own files needs.
With `confine_media_to_root=True` a path whose real path (symlinks resolved) is outside the root is an error for
that sample (skipped and counted under `on_error="skip"`), for data from a source you do not fully trust.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .errors import DataError

# A generous upper bound on the characters one token covers (BPE tokens average ~4 characters of English; long
# whitespace or repeated-symbol runs can merge further). Text longer than `max_length * CHARS_PER_TOKEN` cannot fit
# in `max_length` tokens, so such a record is dropped before the tokenizer ever sees it.
CHARS_PER_TOKEN = 16
_MEDIA_FIELDS = {"image": "image", "images": "image", "audio": "audio", "audios": "audio"}
_MEDIA_FIELDS |= {"video": "video", "videos": "video"}
_REMOTE_PREFIXES = ("http://", "https://", "s3://", "gs://", "hf://")  # as data.media's (it loads numpy)


class DataErrorAt(DataError):
    """A `DataError` that also knows the 1-based column in its line: its message starts `file:line:column`.

    Args:
        reason (`str`): what is wrong.
        column (`int`, *optional*): 1-based character column in the line.
        **location: `source`, `line`, `sample_id`, `hint` as in `DataError`.
    """

    def __init__(self, reason: str, *, column: int | None = None, **location):
        self.column = column
        super().__init__(reason, **location)

    @property
    def where(self) -> str:
        where = self.source or "<record>"
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        if self.sample_id is not None:
            where += f" (sample {self.sample_id!r})"
        return where

    def located(self, *, source=None, line=None, sample_id=None):
        return DataErrorAt(
            self.reason,
            column=self.column,
            source=self.source or source,
            line=self.line if self.line is not None else line,
            sample_id=self.sample_id or sample_id,
            hint=self.hint,
        )

    def __reduce__(self):  # DataLoader workers pickle exceptions back to the main process
        return _rebuild_at, (self.reason, self.column, self.source, self.line, self.sample_id, self.hint)


def _rebuild_at(reason, column, source, line, sample_id, hint) -> DataErrorAt:
    return DataErrorAt(reason, column=column, source=source, line=line, sample_id=sample_id, hint=hint)


def with_hint(error: DataError, hint: str) -> DataError:
    """A copy of `error` (same class and location) whose hint ends with `hint`."""
    copy = error.located()
    copy.hint = f"{error.hint}; {hint}" if error.hint else hint
    copy.args = (copy._message(),)
    return copy


# ------------------------------------------------------------------------------------------------ JSONL lines


def parse_jsonl_line(raw: bytes, path: str, number: int) -> tuple[dict | None, DataError | None]:
    """Decode and parse one JSONL line; `(record, None)` or `(None, error)` with the error's column.

    Args:
        raw (`bytes`): the line as read from the file (binary mode, so one bad byte cannot end the whole read).
        path (`str`): the file, named in errors.
        number (`int`): the 1-based line number.
    """

    def error(reason: str, column: int | None, hint: str) -> DataErrorAt:
        # `file:line` is the id a record without "id" gets, so a later skip of the same line dedups with this one
        return DataErrorAt(reason, column=column, source=path, line=number, sample_id=f"{path}:{number}", hint=hint)

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        column = len(raw[: err.start].decode("utf-8", "replace")) + 1
        reason = f"invalid UTF-8 (byte 0x{raw[err.start]:02x} at column {column})"
        return None, error(reason, column, "re-encode the file as UTF-8, or delete this line")
    try:
        return json.loads(text), None
    except json.JSONDecodeError as err:
        reason = f"invalid JSON ({err.msg} at column {err.colno})"
        return None, error(reason, err.colno, "fix or delete this line; each line must be one JSON object")
    except RecursionError:  # the C parser gives up past Python's recursion limit instead of overflowing the stack
        return None, error(
            "invalid JSON (nested too deeply to parse)", 1, "flatten the record; a record must be a shallow object"
        )


# --------------------------------------------------------------------------------------------------- media


def _media_items(record: dict, source: str, line: int | None) -> list[tuple[str, object]]:
    """`(kind, item)` for every media item of a raw record: those of its canonical sample (top-level keys and HF
    content blocks), or, for a record that is no chat (a preference pair) or does not normalise, its top-level keys."""
    from .formats import normalize_record

    try:
        sample = normalize_record(record, source=source, line=line)
    except Exception:  # noqa: BLE001 - its media are still checked; the loader reports the record's own problem
        sample = {f"{kind}s": [] for kind in _MEDIA_FIELDS.values()}
        for key, kind in _MEDIA_FIELDS.items():
            value = record.get(key)
            sample[f"{kind}s"] += [
                v for v in (value if isinstance(value, (list, tuple)) else [value]) if v is not None
            ]
    return [(kind, item) for kind in ("image", "audio", "video") for item in sample.get(f"{kind}s") or []]


def _local_path(item: object) -> str | None:
    """The file path a media item points to (None for bytes, decoded objects and remote URLs)."""
    if isinstance(item, dict):
        if item.get("bytes") is not None:
            return None
        item = item.get("path")
    if not isinstance(item, str) or not item.strip() or item.startswith(_REMOTE_PREFIXES):
        return None
    return item[len("file://") :] if item.startswith("file://") else item


def _probe(kind: str, path: str) -> None:
    """Read the header only; raise `MediaDecodeError` when it is not a readable file of that kind."""
    from ..processing import media_decoding as md

    if kind == "image":
        with md.open_image(path, what=f"image {path}"):
            return
    if kind == "audio":
        try:
            md.probe_audio(path, what=f"audio {path}")
            return
        except md.MediaDecodeError:
            pass  # libsndfile cannot read every container (m4a, some mp3): the decoder falls back to PyAV too
    try:
        import av
    except ImportError:
        return  # no container library to probe with: the decoder reports it when the sample is read
    try:
        with av.open(path) as container:
            streams = container.streams.audio if kind == "audio" else container.streams.video
            if not streams:
                raise md.MediaDecodeError(f"{kind} {path} has no {kind} stream")
    except md.MediaDecodeError:
        raise
    except Exception as err:  # noqa: BLE001 - PyAV raises many types for unreadable containers
        raise md.MediaDecodeError(f"cannot read the header of {kind} {path}: {err}") from err


def _inside(path: str, root: str) -> bool:
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([real, real_root]) == real_root


@dataclass
class RecordChecks:
    """Checks applied to each raw record when it is read (`iter_records(..., checks=...)`).

    Args:
        media (`bool`, *optional*, defaults to True): every local media file exists, is not empty, and its header
            parses (PIL `Image.open` without decoding, `soundfile.info`, PyAV container probe).
        confine_media_to_root (`bool`, *optional*, defaults to False): a media path whose real path (symlinks
            resolved) lies outside the media root is an error for that sample.
        threads (`int`, *optional*, defaults to 4): threads that check the records of a batch (see `map`).
    """

    media: bool = True
    confine_media_to_root: bool = False
    threads: int = 4

    def __getstate__(self) -> dict:  # DataLoader workers get the settings, not the thread pool
        return {k: v for k, v in self.__dict__.items() if k != "_pool"}

    def map(self, jobs: list[dict]) -> list:
        """`self(**job)` for each job, in order, on a thread pool: checks wait on file-system latency (stat, open,
        header reads), which threads overlap on network storage; on a local disk the cost is about the same."""
        if self.threads <= 1 or len(jobs) < 2:
            return [self(**job) for job in jobs]
        if getattr(self, "_pool", None) is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="openmind-data-check")
        return list(self._pool.map(lambda job: self(**job), jobs))

    def __call__(self, record, *, source: str, line: int | None, media_root: str | None, text: str | None = None):
        """The first problem of `record` as a `DataError` (None when it passes)."""
        if not isinstance(record, dict) or not (self.media or self.confine_media_to_root):
            return None
        for kind, item in _media_items(record, source, line):
            path = _local_path(item)
            if path is None:
                continue
            reason, hint = self._check_path(kind, path, media_root)
            if reason is not None:
                raw_id = record.get("id")
                sample_id = str(raw_id) if raw_id is not None else f"{source}:{line}"
                found = -1 if text is None else text.find(json.dumps(path, ensure_ascii=False))
                found = text.find(json.dumps(path)) if found < 0 and text is not None else found
                column = found + 1 if found >= 0 else None  # the path's opening quote in the line
                return DataErrorAt(reason, column=column, source=source, line=line, sample_id=sample_id, hint=hint)
        return None

    def _check_path(self, kind: str, path: str, media_root: str | None) -> tuple[str | None, str | None]:
        full = os.path.join(media_root, path) if media_root is not None and not os.path.isabs(path) else path
        if self.confine_media_to_root:
            root = media_root if media_root is not None else os.getcwd()
            if not _inside(full, root):
                return (
                    f"{kind} {path} resolves to {os.path.realpath(full)}, outside the media root {root}",
                    "move the file under the media root, or drop --confine_media_to_root if you trust this data",
                )
        if not self.media:
            return None, None
        if not os.path.exists(full):
            return f"{kind} file not found: {full}", "check the path or pass the right --media_root"
        if os.path.getsize(full) == 0:
            return f"{kind} file is empty (0 bytes): {full}", "re-download or remove it"
        from ..processing.media_decoding import MediaDecodeError

        try:
            _probe(kind, full)
        except MediaDecodeError as err:
            return err.reason, "the file is corrupt or in an unsupported format; replace or convert it"
        return None, None


# ----------------------------------------------------------------------------------------------- length


def text_chars(sample: dict) -> int:
    """Characters of text in a canonical sample (every text block and reasoning), media excluded."""
    total = 0
    for message in sample.get("messages") or []:
        total += len(message.get("reasoning_content") or "")
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        else:
            total += sum(len(b.get("text") or "") for b in content or [] if isinstance(b, dict))
    return total


def char_budget(max_length: int | None, chars_per_token: float = CHARS_PER_TOKEN) -> int | None:
    """The most text characters a sample of at most `max_length` tokens can hold (None without a limit)."""
    return None if max_length is None else int(max_length * chars_per_token)


def over_budget_error(sample_id, chars: int, budget: int, max_length: int, source=None, line=None) -> DataError:
    """The skip recorded for a record dropped by `char_budget` (named, with what to do)."""
    return DataError(
        f"{chars} characters of text > {budget} ({budget / max_length:g} per token x max_length {max_length}): "
        "dropped before tokenizing",
        source=source,
        line=line,
        sample_id=sample_id,
        hint="split the record, or raise max_length",
    )


__all__ = [
    "CHARS_PER_TOKEN",
    "DataErrorAt",
    "RecordChecks",
    "char_budget",
    "over_budget_error",
    "parse_jsonl_line",
    "text_chars",
    "with_hint",
]
