"""Training data for every stage: records are read and checked up front, media are decoded per batch.

Each stage gets two objects:

- a *store*: a map-style dataset whose items are canonical samples with decoded media
  ([`~openmind_hf.data.dataset.OpenMindDataset`] for chats and captions, [`PreferenceDataset`] for pairs); under
  `on_error="skip"` a bad record is counted in the run's `SkipReport` and replaced by the next good one;
- the *trainer dataset*: a `datasets.Dataset` of row indices (plus the `images` column TRL looks for to route
  media datasets to on-the-fly collation). The collators (and the GRPO trainer) turn indices back into samples, so
  media stay on disk until their batch is built, whatever the source format (paths, bytes, tar members).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from ..data.dataset import OpenMindDataset
from ..data.errors import DataError
from ..data.formats import normalize_record
from ..data.loading import RecordFilter, RecordRef, iter_records
from ..data.media import decode_sample_media, resolve_media_paths
from ..data.policy import SkipReport, check_on_error, handle_error
from .arguments import DataArguments

logger = logging.getLogger(__name__)


def _load_kwargs(data_args: DataArguments, eval_split: bool) -> dict:
    kwargs = {"split": data_args.eval_dataset_split if eval_split else data_args.dataset_split}
    if data_args.dataset_config:
        kwargs["name"] = data_args.dataset_config
    return kwargs


def _task_filter(data_args: DataArguments):
    return _TaskFilter(set(data_args.tasks)) if data_args.tasks else None


class _TaskFilter(RecordFilter):
    def __init__(self, tasks: set[str]):
        super().__init__()
        self.tasks = tasks

    def _keep(self, sample: dict) -> bool:
        return (sample.get("metadata") or {}).get("task") in self.tasks


class _Truncated(torch.utils.data.Dataset):
    """The first `n` items of a store (keeps its `skip_report`)."""

    def __init__(self, store, n: int):
        self.store, self.n = store, min(n, len(store))
        self.skip_report = store.skip_report

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.n:
            raise IndexError(index)
        return self.store[index]


def load_chat_store(data_args: DataArguments, report: SkipReport, eval_split: bool = False):
    """Chats and captions (pretraining, instruction and HF-messages records) as decoded canonical samples."""
    source = data_args.eval_dataset_name if eval_split else data_args.dataset_name
    if source is None:
        raise ValueError("No training data: pass --dataset_name (a JSONL/JSON/Parquet file or folder, or a Hub id).")
    store = OpenMindDataset(
        source,
        media_root=data_args.media_root,
        on_error=data_args.on_error,
        report=report,
        record_filter=_task_filter(data_args),
        **_load_kwargs(data_args, eval_split),
    )
    limit = data_args.max_eval_samples if eval_split else data_args.max_train_samples
    return _Truncated(store, limit) if limit else store


# ---------------------------------------------------------------------------------------- preference pairs


def _as_messages(value: Any, role: str, field_name: str, err) -> list[dict]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return value
    raise err(f"'{field_name}' is a {type(value).__name__}", "give a string or a list of chat messages")


def normalize_preference_record(record: dict, *, source: str | None = None, line: int | None = None) -> dict:
    """`{"prompt", "chosen", "rejected", "images"/"audios"/...}` (TRL's preference format, conversational or plain
    strings) -> `{"id", "prompt", "chosen", "rejected", "images", "audios", "videos", "metadata"}` with canonical
    payload-free messages (the media lists hold the items, in placeholder order)."""
    raw_id = record.get("id") if isinstance(record, dict) else None
    sample_id = str(raw_id) if raw_id is not None else f"{source or 'record'}:{line}"

    def err(reason: str, hint: str | None = None) -> DataError:
        return DataError(reason, source=source, line=line, sample_id=sample_id, hint=hint)

    if not isinstance(record, dict):
        raise err(f"the record is a {type(record).__name__}, not a JSON object")
    missing = [k for k in ("prompt", "chosen", "rejected") if k not in record]
    if missing:
        raise err(f"a preference record needs 'prompt', 'chosen' and 'rejected'; missing {missing}")
    prompt = _as_messages(record["prompt"], "user", "prompt", err)
    extra = {k: v for k, v in record.items() if k not in ("prompt", "chosen", "rejected", "id")}
    media_keys = {"image", "images", "audio", "audios", "video", "videos"}
    media = {k: v for k, v in extra.items() if k in media_keys}
    metadata = {k: v for k, v in extra.items() if k not in media_keys and k != "metadata"}
    metadata.update(extra.get("metadata") or {})
    sides = {}
    for side in ("chosen", "rejected"):
        reply = _as_messages(record[side], "assistant", side, err)
        if any(m.get("role") != "assistant" for m in reply):
            raise err(f"'{side}' must hold only assistant messages")
        sides[side] = normalize_record(
            {"id": sample_id, "messages": prompt + reply, **media}, source=source, line=line
        )
    n_prompt = len(prompt)
    chosen = sides["chosen"]
    return {
        "id": sample_id,
        "prompt": chosen["messages"][:n_prompt],
        "chosen": chosen["messages"][n_prompt:],
        "rejected": sides["rejected"]["messages"][n_prompt:],
        "images": chosen["images"],
        "audios": chosen["audios"],
        "videos": chosen["videos"],
        "metadata": metadata,
    }


class PreferenceDataset(torch.utils.data.Dataset):
    """Map-style dataset of preference pairs with decoded media, under the bad-data policy (see module docstring).

    Args:
        source: a file, folder, list of records, `datasets.Dataset` or dataset name (as `iter_records` takes).
        media_root (`str`, *optional*): folder relative media paths start from (default: each file's folder).
        on_error (`str`, *optional*, defaults to `"raise"`): `"raise"` or `"skip"`.
        report (`SkipReport`, *optional*): where skips are counted.
    """

    def __init__(self, source, *, media_root=None, on_error: str = "raise", report: SkipReport | None = None, **kw):
        self.on_error = check_on_error(on_error)
        self.skip_report = report if report is not None else SkipReport()
        self.source = source
        self._pairs: list[tuple[dict, RecordRef]] = []
        for ref in iter_records(source, media_root=media_root, **kw):
            try:
                if ref.error is not None:
                    raise ref.error
                pair = normalize_preference_record(ref.record, source=ref.source, line=ref.line)
                self._pairs.append((resolve_media_paths(pair, ref.media_root), ref))
            except DataError as error:
                handle_error(error, self.on_error, self.skip_report)
        if not self._pairs:
            raise DataError("no usable preference pair", source=str(source)[:200], hint=self.skip_report.summary())
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index: int) -> dict:
        n = len(self._pairs)
        for step in range(n):
            i = (index + step) % n
            if i in self._bad:
                continue
            pair, ref = self._pairs[i]
            try:
                return decode_sample_media(pair, source=ref.source, line=ref.line)
            except DataError as error:
                handle_error(error, self.on_error, self.skip_report)
                self._bad.add(i)
        raise DataError("every pair failed to load", source=str(self.source)[:200], hint=self.skip_report.summary())


def load_preference_store(data_args: DataArguments, report: SkipReport, eval_split: bool = False):
    source = data_args.eval_dataset_name if eval_split else data_args.dataset_name
    if source is None:
        raise ValueError("No preference data: pass --dataset_name (JSONL with prompt/chosen/rejected + media).")
    store = PreferenceDataset(
        source,
        media_root=data_args.media_root,
        on_error=data_args.on_error,
        report=report,
        **_load_kwargs(data_args, eval_split),
    )
    limit = data_args.max_eval_samples if eval_split else data_args.max_train_samples
    return _Truncated(store, limit) if limit else store


# ------------------------------------------------------------------------------------------- trainer rows


def index_dataset(store, name: str = "train"):
    """A `datasets.Dataset` with one row per store item: `{"index": i, "store": name, "images": []}`.

    The `images` column tells TRL this is a media dataset, so it leaves collation (and media) to us instead of
    tokenizing the text alone up front. `store` names which store the index points into (train or eval).
    """
    import datasets

    n = len(store)
    return datasets.Dataset.from_dict({"index": list(range(n)), "store": [name] * n, "images": [[] for _ in range(n)]})


class IndexedCollator:
    """Turns rows `{"index": i, "store": name}` into samples of `stores[name]`, then calls `collator(samples)`."""

    def __init__(self, stores: dict, collator):
        self.stores, self.collator = {k: v for k, v in stores.items() if v is not None}, collator

    def __call__(self, rows: list[dict]) -> dict:
        return self.collator([self.stores[row.get("store", "train")][int(row["index"])] for row in rows])


def skip_report_for(output_dir: str | os.PathLike | None) -> SkipReport:
    return SkipReport(run_dir=output_dir)


__all__ = [
    "IndexedCollator",
    "PreferenceDataset",
    "index_dataset",
    "load_chat_store",
    "load_preference_store",
    "normalize_preference_record",
    "skip_report_for",
]
