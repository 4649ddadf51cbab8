"""Errors of the processing code: a sample or media item that cannot be used, named by id and with what to do.

`ProcessingError` is the base of every "bad input" error in the package: the data path's `DataError` subclasses it
(data may import processing, never the reverse), so `except ProcessingError` catches both, and a `SkipReport` can
record either (it reads `reason`, `source`, `line`, `sample_id`).
"""

from __future__ import annotations


class ProcessingError(ValueError):
    """A sample or media item the processing code cannot use.

    Args:
        reason (`str`): what is wrong, e.g. `"audio contains NaN or inf samples"`.
        source (`str`, *optional*): the file, dataset or component the sample came from (e.g. `"collator"`).
        line (`int`, *optional*): 1-based line in a JSONL file, or 0-based row/item index elsewhere.
        sample_id (`str`, *optional*): the sample's id.
        hint (`str`, *optional*): what the user can do about it.
    """

    def __init__(
        self,
        reason: str,
        *,
        source: str | None = None,
        line: int | None = None,
        sample_id: str | None = None,
        hint: str | None = None,
    ):
        self.reason, self.source, self.line, self.sample_id, self.hint = reason, source, line, sample_id, hint
        super().__init__(self._message())

    @property
    def where(self) -> str:
        """`file:line (sample id)`, with whichever parts are known."""
        where = self.source or "<record>"
        if self.line is not None:
            where += f":{self.line}"
        if self.sample_id is not None:
            where += f" (sample {self.sample_id!r})"
        return where

    def located(self, *, source=None, line=None, sample_id=None):
        """A copy (same class) with the missing location parts filled in: media code raises before it knows the
        record."""
        return type(self)(
            self.reason,
            source=self.source or source,
            line=self.line if self.line is not None else line,
            sample_id=self.sample_id or sample_id,
            hint=self.hint,
        )

    def _message(self) -> str:
        located = self.source is not None or self.line is not None or self.sample_id is not None
        message = f"{self.where}: {self.reason}" if located else self.reason
        return f"{message}. {self.hint}" if self.hint else message

    def __reduce__(self):  # DataLoader workers pickle exceptions back to the main process
        return _rebuild, (type(self), self.reason, self.source, self.line, self.sample_id, self.hint)


class MediaDecodeError(ProcessingError):
    """An image, audio clip or video that cannot be decoded.

    Args:
        reason (`str`): what is wrong; it names the item (`what`) but never holds its bytes.
        kind (`str`, *optional*, defaults to `"unreadable"`): `"unreadable"` (corrupt, truncated, unknown format),
            `"too_large"` (over PIL's decompression-bomb limit), `"empty"` (no pixels or samples), `"non_finite"`
            (NaN/inf samples), `"layout"` (an array whose shape breaks the convention) or `"missing_library"`.
            Callers that must not echo library messages (the server) pick their own wording from it.
        **location: `source`, `line`, `sample_id`, `hint` as in [`ProcessingError`].
    """

    def __init__(self, reason: str, *, kind: str = "unreadable", **location):
        self.kind = kind
        super().__init__(reason, **location)

    def located(self, *, source=None, line=None, sample_id=None):
        error = super().located(source=source, line=line, sample_id=sample_id)
        error.kind = self.kind
        return error

    def __reduce__(self):
        return _rebuild_media, (self.reason, self.kind, self.source, self.line, self.sample_id, self.hint)


def _rebuild(cls, reason, source, line, sample_id, hint) -> ProcessingError:
    return cls(reason, source=source, line=line, sample_id=sample_id, hint=hint)


def _rebuild_media(reason, kind, source, line, sample_id, hint) -> MediaDecodeError:
    return MediaDecodeError(reason, kind=kind, source=source, line=line, sample_id=sample_id, hint=hint)


__all__ = ["MediaDecodeError", "ProcessingError"]
