"""The one error type of the data path: it names the file, the line or sample, what is wrong and what to do.

`DataError` is a [`~openmind_hf.processing.errors.ProcessingError`] (data may import processing, not the reverse):
`except ProcessingError` catches both, e.g. around the collator, which raises `ProcessingError` for what the
processor rejects and passes on the `DataError`s of the data side's `prepare`.
"""

from __future__ import annotations

from ..processing.errors import ProcessingError


class DataError(ProcessingError):
    """A record, file or media item that cannot be used.

    Args:
        reason (`str`): what is wrong, e.g. `"2 <image> placeholders but 1 image"`.
        source (`str`, *optional*): the file (or dataset name) the record came from.
        line (`int`, *optional*): 1-based line in a JSONL file, or 0-based row/item index elsewhere.
        sample_id (`str`, *optional*): the record's id.
        hint (`str`, *optional*): what the user can do about it.
    """


__all__ = ["DataError"]
