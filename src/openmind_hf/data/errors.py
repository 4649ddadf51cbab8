"""The one error type of the data path: it names the file, the line or sample, what is wrong and what to do."""

from __future__ import annotations


class DataError(ValueError):
    """A record, file or media item that cannot be used.

    Args:
        reason (`str`): what is wrong, e.g. `"2 <image> placeholders but 1 image"`.
        source (`str`, *optional*): the file (or dataset name) the record came from.
        line (`int`, *optional*): 1-based line in a JSONL file, or 0-based row/item index elsewhere.
        sample_id (`str`, *optional*): the record's id.
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

    def located(self, *, source=None, line=None, sample_id=None) -> DataError:
        """A copy with the missing location parts filled in (media code raises before it knows the record)."""
        return DataError(
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
        return _rebuild, (self.reason, self.source, self.line, self.sample_id, self.hint)


def _rebuild(reason, source, line, sample_id, hint) -> DataError:
    return DataError(reason, source=source, line=line, sample_id=sample_id, hint=hint)


__all__ = ["DataError"]
