"""Training data for every stage: records are read and checked up front, media are decoded per batch.

Each stage gets two objects:

- a *store*: a map-style dataset whose items are canonical samples with decoded media
  ([`~openmind_hf.data.dataset.OpenMindDataset`] for chats and captions,
  [`~openmind_hf.data.preference.PreferenceDataset`] for pairs, [`PromptStore`] for GRPO prompts); under
  `on_error="skip"` a bad record is counted in the run's `SkipReport` and replaced by the next good one;
- the *trainer dataset*: a `datasets.Dataset` of row indices (plus the `images` column TRL looks for to route
  media datasets to on-the-fly collation). The collators (and the GRPO trainer) turn indices back into samples, so
  media stay on disk until their batch is built, whatever the source format (paths, bytes, tar members).

    train, eval_ = load_train_and_eval(load_chat_store, data_args, report)
    trainer = OpenMindSFTTrainer(model=model, **indexed_inputs(train, eval_, collate), ...)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..data.dataset import OpenMindDataset
from ..data.errors import DataError
from ..data.loading import RecordFilter
from ..data.policy import SkipReport
from ..data.preference import PreferenceDataset
from ..data.validate import CHARS_PER_TOKEN, RecordChecks, char_budget, over_budget_error, with_hint
from .arguments import DataArguments


def _load_kwargs(data_args: DataArguments, eval_split: bool) -> dict:
    kwargs = {"split": data_args.eval_dataset_split if eval_split else data_args.dataset_split}
    if data_args.dataset_config:
        kwargs["name"] = data_args.dataset_config
    return kwargs


@dataclass
class _StageFilter(RecordFilter):
    """`RecordFilter` (quality score) plus `--tasks`: keep only records whose `metadata.task` is listed."""

    tasks: set[str] | None = field(default=None)

    def _keep(self, sample: dict) -> bool:
        if self.tasks is not None and (sample.get("metadata") or {}).get("task") not in self.tasks:
            return False
        return super()._keep(sample)


def record_filter(data_args: DataArguments) -> RecordFilter | None:
    """The metadata filter `--min_quality_score` and `--tasks` ask for, or None when neither is set."""
    if data_args.min_quality_score is None and not data_args.tasks:
        return None
    return _StageFilter(
        min_quality_score=data_args.min_quality_score, tasks=set(data_args.tasks) if data_args.tasks else None
    )


class _Truncated(torch.utils.data.Dataset):
    """The first `n` items of a store (keeps its `skip_report`)."""

    def __init__(self, store, n: int):
        self.store, self.n = store, min(n, len(store))
        self.skip_report = store.skip_report
        self.max_chars_per_token = getattr(store, "max_chars_per_token", CHARS_PER_TOKEN)
        if hasattr(store, "text_chars"):
            self.text_chars, self.location = store.text_chars, store.location

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.n:
            raise IndexError(index)
        return self.store[index]


def _load_store(dataset_cls, data_args: DataArguments, report: SkipReport, eval_split: bool, missing: str):
    source = data_args.eval_dataset_name if eval_split else data_args.dataset_name
    if source is None:
        raise ValueError(missing)
    # Pre-flight: every record is parsed and its media files checked (exist, header parses) here, before the first
    # step; under on_error="raise" the first bad record stops the run now, in one line, with what to do.
    checks = RecordChecks(confine_media_to_root=data_args.confine_media_to_root)
    try:
        store = dataset_cls(
            source,
            media_root=data_args.media_root,
            on_error=data_args.on_error,
            report=report,
            record_filter=record_filter(data_args),
            checks=checks,
            **_load_kwargs(data_args, eval_split),
        )
    except DataError as err:
        raise with_hint(err, _preflight_hint(source)) from None
    store.max_chars_per_token = data_args.max_chars_per_token
    limit = data_args.max_eval_samples if eval_split else data_args.max_train_samples
    return _Truncated(store, limit) if limit else store


def _preflight_hint(source) -> str:
    return f"or pass --on_error skip to skip and count bad records; `openmind data check {source}` lists them all"


def load_chat_store(data_args: DataArguments, report: SkipReport, eval_split: bool = False):
    """
    Chats and captions (pretraining, instruction and HF-messages records) as decoded canonical samples.

    Args:
        data_args (`DataArguments`): where the data is and how to filter it.
        report (`SkipReport`): where bad records are counted.
        eval_split (`bool`, *optional*, defaults to False): load `eval_dataset_name` instead of `dataset_name`.
    """
    missing = "No training data: pass --dataset_name (a JSONL/JSON/Parquet file or folder, or a Hub id)."
    store = _load_store(OpenMindDataset, data_args, report, eval_split, missing)
    getattr(store, "store", store).use_audio_in_video = data_args.use_audio_in_video  # under a `_Truncated` view
    return store


def load_preference_store(data_args: DataArguments, report: SkipReport, eval_split: bool = False):
    """Preference pairs with decoded media (arguments as in `load_chat_store`)."""
    missing = "No preference data: pass --dataset_name (JSONL with prompt/chosen/rejected + media)."
    return _load_store(PreferenceDataset, data_args, report, eval_split, missing)


def load_train_and_eval(loader, data_args: DataArguments, report: SkipReport) -> tuple:
    """`(train_store, eval_store)` through `loader` (`load_chat_store` or `load_preference_store`); the eval store
    is None without `--eval_dataset_name`."""
    train = loader(data_args, report)
    return train, (loader(data_args, report, eval_split=True) if data_args.eval_dataset_name else None)


class PromptStore(torch.utils.data.Dataset):
    """
    Chat samples -> GRPO prompt samples: the turns before the last assistant turn (`prompt`), its `answer`
    (`metadata.answer`, else the reference assistant text) and `task` (`metadata.task`).

    Args:
        chats (`torch.utils.data.Dataset`): a chat store (`load_chat_store`).
    """

    def __init__(self, chats):
        self.chats = chats
        self.skip_report = getattr(chats, "skip_report", None)

    def __len__(self) -> int:
        return len(self.chats)

    def __getitem__(self, index: int) -> dict:
        sample = self.chats[index]
        messages = sample["messages"]
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None or last == 0:
            raise DataError("a GRPO prompt needs a user turn before the reference answer", sample_id=sample.get("id"))
        metadata = sample.get("metadata") or {}
        reference = "".join(b.get("text", "") for b in messages[last]["content"] if b.get("type") == "text")
        return {
            **sample,
            "prompt": messages[:last],
            "answer": str(metadata.get("answer", reference)),
            "task": metadata.get("task"),
        }


# ------------------------------------------------------------------------------------------- trainer rows


def index_dataset(store, name: str = "train", indices: list[int] | None = None):
    """
    A `datasets.Dataset` with one row per store item (or per item of `indices`): `{"index": i, "store": name,
    "images": []}`.

    The `images` column tells TRL this is a media dataset, so it leaves collation (and media) to us instead of
    tokenizing the text alone up front. `store` names which store the index points into (train or eval).
    """
    import datasets

    indices = list(range(len(store))) if indices is None else indices
    n = len(indices)
    return datasets.Dataset.from_dict({"index": indices, "store": [name] * n, "images": [[] for _ in range(n)]})


def within_budget(store, max_length: int | None) -> list[int]:
    """
    Indices of the store items whose text can fit in `max_length` tokens; the others are counted in the store's
    `skip_report` (never raised: like the collator's drop of over-long samples) and never reach the tokenizer.

    The budget is `max_length * store.max_chars_per_token` characters (`--max_chars_per_token`, default 16): a
    bound no real tokenizer beats, so only records that would be dropped after tokenizing anyway are dropped here.
    Stores that cannot tell an item's text length without decoding it (preference pairs) are not checked.
    """
    budget = char_budget(max_length, getattr(store, "max_chars_per_token", CHARS_PER_TOKEN))
    if budget is None or not hasattr(store, "text_chars"):
        return list(range(len(store)))
    keep = []
    for i in range(len(store)):
        chars = store.text_chars(i)
        if chars <= budget:
            keep.append(i)
            continue
        source, line, sample_id = store.location(i)
        store.skip_report.add(over_budget_error(sample_id, chars, budget, max_length, source=source, line=line))
    if not keep:
        raise DataError(f"every record is longer than {budget} characters", hint="raise max_length")
    return keep


class IndexedCollator:
    """
    Turns rows `{"index": i, "store": name}` into samples of `stores[name]`, then calls `collator(samples)`. With a
    caching collator (one with `is_cached(key)`, e.g. `CachedChatCollator`), each sample carries
    `cache_key=(store, index)`, and a sample already encoded is passed as `{"cache_key": key}` without being read.

    Args:
        stores (`dict[str, Dataset]`): the stores by name (`"train"`, `"eval"`); None values are left out.
        collator (`Callable[[list[dict]], dict]`): builds the batch from decoded samples.
    """

    def __init__(self, stores: dict, collator):
        self.stores, self.collator = {k: v for k, v in stores.items() if v is not None}, collator

    def __call__(self, rows: list[dict]) -> dict:
        is_cached = getattr(self.collator, "is_cached", None)  # a caching collator (CachedChatCollator)
        if is_cached is None:
            return self.collator([self.stores[row.get("store", "train")][int(row["index"])] for row in rows])
        samples = []
        for row in rows:
            key = (row.get("store", "train"), int(row["index"]))
            # An encoded sample is not read again: its media were decoded once, on its first batch.
            samples.append({"cache_key": key} if is_cached(key) else {**self.stores[key[0]][key[1]], "cache_key": key})
        return self.collator(samples)


def indexed_inputs(train_store, eval_store, collator) -> dict:
    """The trainer's `data_collator`, `train_dataset` and `eval_dataset` for two stores and a sample collator; items
    whose text cannot fit in the collator's `max_length` are dropped (and counted) here, before tokenizing."""
    max_length = getattr(collator, "max_length", None)
    return {
        "data_collator": IndexedCollator({"train": train_store, "eval": eval_store}, collator),
        "train_dataset": index_dataset(train_store, indices=within_budget(train_store, max_length)),
        "eval_dataset": None
        if eval_store is None
        else index_dataset(eval_store, "eval", within_budget(eval_store, max_length)),
    }


__all__ = [
    "IndexedCollator",
    "PromptStore",
    "index_dataset",
    "indexed_inputs",
    "load_chat_store",
    "load_preference_store",
    "load_train_and_eval",
    "record_filter",
]
