"""Preference pairs (DPO and reward-model data): TRL's `{"prompt", "chosen", "rejected"}` records with media.

    pairs = PreferenceDataset("data/demo/preference_train.jsonl", on_error="skip")
    pairs[0]  # {"id", "prompt", "chosen", "rejected", "images", "audios", "videos", "metadata"}, media decoded

Records are read and checked up front; media are decoded when an item is read, so they stay on disk until their
batch is built.
"""

from __future__ import annotations

from typing import Any

import torch

from .errors import DataError
from .formats import normalize_record
from .loading import RecordFilter, RecordRef, iter_records
from .media import decode_sample_media, resolve_media_paths
from .policy import ReplacesBadItems, SkipReport, check_on_error, handle_error

_MEDIA_KEYS = {"image", "images", "audio", "audios", "video", "videos"}


def _as_messages(value: Any, role: str, field_name: str, err) -> list[dict]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return value
    raise err(f"'{field_name}' is a {type(value).__name__}", "give a string or a list of chat messages")


def normalize_preference_record(record: dict, *, source: str | None = None, line: int | None = None) -> dict:
    """
    TRL's preference format (conversational or plain strings) -> one canonical pair.

    Args:
        record (`dict`): `{"prompt", "chosen", "rejected", "images"/"audios"/..., "metadata"?, "id"?}`.
        source (`str`, *optional*): the file the record came from (named in errors).
        line (`int`, *optional*): its line in that file (named in errors).

    Returns:
        `dict`: `{"id", "prompt", "chosen", "rejected", "images", "audios", "videos", "metadata"}` with canonical,
        payload-free messages; the media lists hold the items in placeholder order.
    """
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
    media = {k: v for k, v in extra.items() if k in _MEDIA_KEYS}
    metadata = {k: v for k, v in extra.items() if k not in _MEDIA_KEYS and k != "metadata"}
    metadata.update(extra.get("metadata") or {})
    sides = {}
    for side in ("chosen", "rejected"):
        reply = _as_messages(record[side], "assistant", side, err)
        if any(m.get("role") != "assistant" for m in reply):
            raise err(f"'{side}' must hold only assistant messages")
        # Both sides go through the chat normalizer with the prompt, so media placeholders are checked once per side.
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


class PreferenceDataset(ReplacesBadItems, torch.utils.data.Dataset):
    """
    Map-style dataset of preference pairs with decoded media, under the bad-data policy: under `on_error="skip"` a
    bad record is counted in `report` and, when its media fail to decode later, replaced by the next good pair.

    Args:
        source (`str`, `list[dict]` or `datasets.Dataset`): what `iter_records` reads (file, folder, records, name).
        media_root (`str`, *optional*): folder relative media paths start from (default: each file's folder).
        on_error (`str`, *optional*, defaults to `"raise"`): `"raise"` or `"skip"`.
        report (`SkipReport`, *optional*): where skips are counted.
        record_filter (`RecordFilter`, *optional*): metadata filters (e.g. `min_quality_score`); pairs it rejects
            are filtered out, not counted as errors.
        **kw: passed to `iter_records` (`split`, `name`, ...).
    """

    _item_name = "pair"

    def __init__(
        self,
        source,
        *,
        media_root=None,
        on_error: str = "raise",
        report: SkipReport | None = None,
        record_filter: RecordFilter | None = None,
        **kw,
    ):
        self.on_error = check_on_error(on_error)
        self.skip_report = report if report is not None else SkipReport()
        self.source = source
        self._pairs: list[tuple[dict, RecordRef]] = []
        for ref in iter_records(source, media_root=media_root, **kw):
            try:
                if ref.error is not None:
                    raise ref.error
                pair = normalize_preference_record(ref.record, source=ref.source, line=ref.line)
                pair = resolve_media_paths(pair, ref.media_root)
            except DataError as error:
                handle_error(error, self.on_error, self.skip_report)
                continue
            if record_filter is None or record_filter(pair):
                self._pairs.append((pair, ref))
        if not self._pairs:
            raise DataError("no usable preference pair", source=str(source)[:200], hint=self.skip_report.summary())
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self._pairs)

    def _load_item(self, index: int) -> dict:
        pair, ref = self._pairs[index]
        return decode_sample_media(pair, source=ref.source, line=ref.line)


__all__ = ["PreferenceDataset", "normalize_preference_record"]
