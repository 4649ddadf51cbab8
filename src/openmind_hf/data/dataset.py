"""torch datasets that yield canonical samples with their media decoded once, under the bad-data policy.

- `OpenMindDataset` (map-style): reads and checks every record up front (format errors surface at once: raised,
  or skipped and counted), keeps the raw records, and decodes media in `__getitem__`. With `on_error="skip"` a
  sample whose media fail is recorded and replaced by the next readable one, so batches stay full and no index
  ever raises inside a DataLoader worker.
- `OpenMindIterableDataset` (streaming): reads records as it goes; bad ones are skipped and counted. Records are
  split across DataLoader workers by index (`datasets` streaming sources shard themselves by file). With
  `checks=RecordChecks()` each record's media are checked as it arrives, not before the first step: a stream cannot
  be validated without reading all of it; run `openmind data check SOURCE` on it first for that.

With `num_workers > 0` each worker has its own copy of the `SkipReport`: give `run_dir` so workers write their
skips there, and call `dataset.skip_report.collect()` at the end of the run.

For raw records that do not come through these datasets (e.g. the rows of an HF `datasets.Dataset`),
`RecordCollator` normalises and decodes each one here, on the data side (`prepare_sample`), before processing's
`OpenMindCollator` batches them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import get_worker_info

from ..processing.collator import OpenMindCollator
from .errors import DataError
from .formats import normalize_record
from .loading import RecordFilter, RecordRef, iter_records, normalize_ref
from .media import DEFAULT_SAMPLING_RATE, decode_sample_media
from .policy import ReplacesBadItems, SkipReport, check_on_error, handle_error
from .validate import text_chars


class _SampleLoader:
    """What both datasets share: turn a `RecordRef` into a decoded sample, or a located `DataError`."""

    # Hear videos whose record does not say `"audio"` (the recipes' `--use_audio_in_video`); set after construction.
    use_audio_in_video: bool = False

    def __init__(
        self,
        on_error: str,
        report: SkipReport | None,
        run_dir: str | os.PathLike | None,
        record_filter: RecordFilter | None,
        decode: bool,
        sampling_rate: int,
        num_frames: int | None,
        transform: Callable[[dict], dict] | None,
    ):
        self.on_error = check_on_error(on_error)
        self.skip_report = report if report is not None else SkipReport(run_dir)
        self.record_filter = record_filter
        self.decode, self.sampling_rate, self.num_frames, self.transform = decode, sampling_rate, num_frames, transform

    def load(self, ref: RecordRef, decode: bool | None = None) -> dict | None:
        """The sample for `ref`; None when filtered out. Raises `DataError` (any failure is turned into one)."""
        try:
            sample = normalize_ref(ref)
            if self.record_filter is not None and not self.record_filter(sample):
                return None
            if self.decode if decode is None else decode:
                sample = decode_sample_media(
                    sample,
                    sampling_rate=self.sampling_rate,
                    num_frames=self.num_frames,
                    use_audio_in_video=self.use_audio_in_video,
                    source=ref.source,
                    line=ref.line,
                )
                if self.transform is not None:
                    sample = self.transform(sample)
            return sample
        except DataError:
            raise
        except Exception as err:  # a bug or an odd file must not kill a long run under "skip": report it, located
            sample_id = ref.record.get("id") if isinstance(ref.record, dict) else None
            raise DataError(
                f"unexpected {type(err).__name__}: {err}", source=ref.source, line=ref.line, sample_id=sample_id
            ) from err


class OpenMindDataset(ReplacesBadItems, torch.utils.data.Dataset, _SampleLoader):
    """Map-style dataset of canonical samples.

    Args:
        source: anything `iter_records` takes (file, folder, list of dicts, `datasets.Dataset`, dataset name).
        media_root (`str`, *optional*): folder relative media paths start from (defaults to each file's folder).
        on_error (`str`, *optional*, defaults to `"raise"`): `"raise"` or `"skip"`.
        report (`SkipReport`, *optional*): where skips go; a new one (with `run_dir`) by default.
        run_dir (`str`, *optional*): folder where workers write skip records (see `SkipReport`).
        record_filter (`RecordFilter`, *optional*): metadata filters.
        decode (`bool`, *optional*, defaults to True): decode media in `__getitem__`.
        sampling_rate (`int`, *optional*, defaults to 16000): audio rate.
        num_frames (`int`, *optional*, defaults to 8): frames sampled per video.
        transform (`Callable`, *optional*): applied to each decoded sample.
        **iter_kwargs: passed to `iter_records` (`split`, `name`, `data_files`, `checks`, ...); with
            `checks=RecordChecks()` media files are checked (exist, header parses) here, before any item is read.
    """

    def __init__(
        self,
        source: Any,
        *,
        media_root: str | os.PathLike | None = None,
        on_error: str = "raise",
        report: SkipReport | None = None,
        run_dir: str | os.PathLike | None = None,
        record_filter: RecordFilter | None = None,
        decode: bool = True,
        sampling_rate: int = DEFAULT_SAMPLING_RATE,
        num_frames: int | None = 8,
        transform: Callable[[dict], dict] | None = None,
        **iter_kwargs,
    ):
        _SampleLoader.__init__(
            self, on_error, report, run_dir, record_filter, decode, sampling_rate, num_frames, transform
        )
        self.source = source
        # Raw records are kept (not canonical samples: those are ~3x larger) and re-normalised per item (~10 us).
        self._refs: list[RecordRef] = []
        self._chars: list[int] = []  # text characters per kept record, for length budgets before tokenizing
        for ref in iter_records(source, media_root=media_root, **iter_kwargs):
            try:
                sample = self.load(ref, decode=False)
                if sample is None:
                    continue
            except DataError as err:
                handle_error(err, self.on_error, self.skip_report)
                continue
            self._refs.append(ref)
            self._chars.append(text_chars(sample))
        if not self._refs:
            raise DataError(
                "no usable sample (all records were filtered or skipped)",
                source=str(source)[:200],
                hint=self.skip_report.summary(),
            )
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self._refs)

    def text_chars(self, index: int) -> int:
        """Characters of text in item `index` (known without decoding media or tokenizing)."""
        return self._chars[index]

    def location(self, index: int) -> tuple[str, int | None, str]:
        """`(source, line, sample_id)` of item `index` (the id is `source:line` for a record without one)."""
        ref = self._refs[index]
        raw_id = ref.record.get("id") if isinstance(ref.record, dict) else None
        return ref.source, ref.line, str(raw_id) if raw_id is not None else f"{ref.source}:{ref.line}"

    def _load_item(self, index: int) -> dict | None:
        return self.load(self._refs[index])


class OpenMindIterableDataset(torch.utils.data.IterableDataset, _SampleLoader):
    """Streaming dataset of canonical samples; the iterator never dies on bad data under `on_error="skip"`.

    Takes the same arguments as `OpenMindDataset`, plus `streaming` (default True) for `datasets` sources.
    """

    def __init__(
        self,
        source: Any,
        *,
        media_root: str | os.PathLike | None = None,
        on_error: str = "raise",
        report: SkipReport | None = None,
        run_dir: str | os.PathLike | None = None,
        record_filter: RecordFilter | None = None,
        decode: bool = True,
        sampling_rate: int = DEFAULT_SAMPLING_RATE,
        num_frames: int | None = 8,
        transform: Callable[[dict], dict] | None = None,
        streaming: bool = True,
        **iter_kwargs,
    ):
        _SampleLoader.__init__(
            self, on_error, report, run_dir, record_filter, decode, sampling_rate, num_frames, transform
        )
        self.source, self.media_root, self.streaming, self.iter_kwargs = source, media_root, streaming, iter_kwargs

    def _shards_itself(self) -> bool:
        # `datasets` streaming datasets split their shards across DataLoader workers on their own.
        try:
            import datasets
        except ImportError:
            return False
        return isinstance(self.source, datasets.IterableDataset) or (
            isinstance(self.source, str) and not os.path.exists(self.source) and self.streaming
        )

    def __iter__(self):
        worker = get_worker_info()
        by_index = worker is not None and worker.num_workers > 1 and not self._shards_itself()
        refs = iter_records(self.source, media_root=self.media_root, streaming=self.streaming, **self.iter_kwargs)
        index = -1
        while True:
            try:
                ref = next(refs)
            except StopIteration:
                return
            except Exception as err:
                # The source's own reader failed (e.g. `datasets` cannot parse a file). A generator cannot resume
                # after raising: under "skip" the failure is reported and this worker's stream ends cleanly.
                error = DataError(
                    f"the reader of this source failed after record {index + 1}: {type(err).__name__}: {err}",
                    source=str(self.source)[:200],
                    line=index + 1,
                    hint="fix or convert the file; records after this point were not read",
                )
                handle_error(error, self.on_error, self.skip_report)
                return
            index += 1
            if by_index and index % worker.num_workers != worker.id:
                continue
            try:
                sample = self.load(ref)
            except DataError as err:
                handle_error(err, self.on_error, self.skip_report)
                continue
            if sample is not None:
                yield sample


def prepare_sample(sample: dict) -> dict:
    """A raw record (any format `normalize_record` takes) or a canonical sample -> a canonical sample whose media
    are decoded (16 kHz audio, 8 frames per video), as `OpenMindCollator` takes it.

    Raises:
        `DataError`: the record is malformed or a media item cannot be read, naming the sample.
    """
    canonical = sample if "kind" in sample and "messages" in sample else normalize_record(sample)
    if any(isinstance(x, (str, dict, bytes)) for k in ("images", "audios", "videos") for x in canonical.get(k) or []):
        canonical = decode_sample_media(canonical)
    return canonical


class RecordCollator(OpenMindCollator):
    """`OpenMindCollator` for raw records (HF `{"messages", "images"}` rows, instruction or pretraining records,
    canonical samples with media paths): each sample goes through `prepare_sample` first, under the collator's
    `on_error` policy. Takes the same arguments as `OpenMindCollator`."""

    def __init__(self, processor, *args, prepare=prepare_sample, **kwargs):
        super().__init__(processor, *args, prepare=prepare, **kwargs)


__all__ = ["OpenMindDataset", "OpenMindIterableDataset", "RecordCollator", "prepare_sample"]
