"""The bad-data policy: `on_error="raise"` stops at the first bad record, `"skip"` counts it and carries on.

Skips are kept in a `SkipReport`. A DataLoader worker holds its own copy of the dataset (and so of the report), so
when the report has a `run_dir` every skip is also appended to `run_dir/skips/skips-<pid>.jsonl`; `collect()` in the
main process merges those files at the end of a run. Records are deduplicated by (source, line, id), so a sample
that fails again in the next epoch is counted once.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from .errors import DataError

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
ON_ERROR_CHOICES = ("raise", "skip")


@dataclass(frozen=True)
class SkipRecord:
    """One skipped record: where it came from and why."""

    sample_id: str | None
    source: str | None
    line: int | None
    reason: str

    @classmethod
    def from_error(cls, error: DataError) -> SkipRecord:
        return cls(error.sample_id, error.source, error.line, error.reason)

    @property
    def key(self) -> tuple:
        return (self.source, self.line, self.sample_id)


class SkipReport:
    """Counts and logs skipped records; readable at the end of a run and mergeable across workers.

    Args:
        run_dir (`str` or `Path`, *optional*): when given, skips are also written to `run_dir/skips/*.jsonl` so
            that skips seen inside DataLoader workers reach the main process (`collect()`).
        log_first (`int`, *optional*, defaults to 20): skips logged at WARNING level; later ones at DEBUG.
    """

    def __init__(self, run_dir: str | os.PathLike | None = None, log_first: int = 20):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.log_first = log_first
        self._records: dict[tuple, SkipRecord] = {}

    # -- recording
    def add(self, error: DataError) -> None:
        """Record a skipped sample (once per (source, line, id)) and log it."""
        record = SkipRecord.from_error(error)
        if record.key in self._records:
            return
        self._records[record.key] = record
        level = logging.WARNING if len(self._records) <= self.log_first else logging.DEBUG
        logger.log(level, "skipped %s", error)
        if self.run_dir is not None:
            folder = self.run_dir / "skips"
            folder.mkdir(parents=True, exist_ok=True)
            # One file per process: appends from different workers never interleave inside a line.
            with open(folder / f"skips-{os.getpid()}.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(asdict(record)) + "\n")

    def merge(self, other: SkipReport) -> SkipReport:
        """Add `other`'s records to this report (duplicates counted once); returns self."""
        for key, record in other._records.items():
            self._records.setdefault(key, record)
        return self

    def collect(self) -> SkipReport:
        """Merge the skip files that workers wrote under `run_dir` into this report; returns self."""
        if self.run_dir is not None:
            self.merge(SkipReport.load(self.run_dir))
        return self

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> SkipReport:
        """Read every `run_dir/skips/*.jsonl` into one report (a later process can read a finished run)."""
        report = cls()
        for path in sorted((Path(run_dir) / "skips").glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    record = SkipRecord(**json.loads(line))
                    report._records.setdefault(record.key, record)
        return report

    # -- reading
    @property
    def count(self) -> int:
        return len(self._records)

    @property
    def records(self) -> list[SkipRecord]:
        return list(self._records.values())

    @property
    def ids(self) -> list[str | None]:
        return [r.sample_id for r in self._records.values()]

    @property
    def reasons(self) -> list[str]:
        return [r.reason for r in self._records.values()]

    def to_dict(self, max_records: int = 1000) -> dict:
        return {"count": self.count, "records": [asdict(r) for r in self.records[:max_records]]}

    def summary(self, max_lines: int = 10) -> str:
        """A few lines for the end-of-run log: the count, the commonest reasons, the first ids."""
        if not self.count:
            return "data: no records skipped"
        # group by the reason with file paths blanked, so "file not found: a.png" and "...: b.png" count together
        reasons = Counter(re.sub(r"\S*/\S*", "<path>", r.reason).split(":")[0] for r in self._records.values())
        lines = [f"data: skipped {self.count} record(s)"]
        lines += [f"  {n} x {reason}" for reason, n in reasons.most_common(max_lines)]
        for r in self.records[:max_lines]:
            where = f"{r.source}:{r.line}" if r.line is not None else str(r.source)
            lines.append(f"  - {r.sample_id} ({where}): {r.reason}")
        if self.count > max_lines:
            lines.append(f"  ... and {self.count - max_lines} more")
        return "\n".join(lines)

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"SkipReport(count={self.count}, run_dir={self.run_dir})"


def check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    return on_error


def handle_error(error: DataError, on_error: str, report: SkipReport | None) -> None:
    """Apply the policy: re-raise for `"raise"`, record in `report` for `"skip"`."""
    if on_error == "raise":
        raise error
    if report is not None:
        report.add(error)


class ReplacesBadItems:
    """Map-style indexing where a bad item is handled by the `on_error` policy and replaced by the next good one
    (under "skip" a long run never dies on one bad file). Subclasses set `on_error`, `skip_report`, `source` and
    `_bad` (a set) and define `__len__` and `_load_item(i)` (the item, None to pass over it, or raise `DataError`)."""

    _item_name = "sample"

    def __iter__(self):
        # Without this, `for item in dataset` would never end: indices wrap (to replace bad items), so the IndexError
        # that ends Python's legacy iteration protocol never comes.
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: int):
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} {self._item_name}s")
        for step in range(n):
            i = (index + step) % n
            if i in self._bad:
                continue
            try:
                item = self._load_item(i)
                if item is not None:
                    return item
            except DataError as err:
                handle_error(err, self.on_error, self.skip_report)
                self._bad.add(i)  # per process: each worker learns it once
        raise DataError(
            f"every {self._item_name} failed to load", source=str(self.source)[:200], hint=self.skip_report.summary()
        )


__all__ = [
    "ON_ERROR_CHOICES",
    "OnError",
    "ReplacesBadItems",
    "SkipRecord",
    "SkipReport",
    "check_on_error",
    "handle_error",
]
