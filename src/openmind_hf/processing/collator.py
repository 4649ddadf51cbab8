"""One collator for every recipe: chats -> padded or packed batches with assistant-only labels.

Each sample is rendered through the processor's chat template with `return_assistant_tokens_mask=True`, so the
template's `{% generation %}` markers decide what is labelled: the assistant turns of instruction data, the caption
of pretraining data (its assistant turn). Everything else is -100.

Length policy: a sample longer than `max_length` is never cut, so a run of `<image>`/`<audio>`/`<video>` tokens is
never split from its features: `truncation_policy="drop"` drops and counts it, `"keep"` keeps it whole.

Packing (`packing=True`) is padding-free: samples are laid end to end in as few rows of at most `max_length` tokens
as first-fit-decreasing finds, `position_ids` restart at 0 for each sample, and there is NO `attention_mask`.
transformers then derives a per-sample block-diagonal mask from the `position_ids` (sdpa/eager/flex) or
`cu_seqlens` (flash-attention varlen) - but only when no KV cache is built, so packed batches carry
`use_cache=False`. Media tensors are concatenated in row-major token order, the order the model scatters them in.

Samples are canonical samples (`openmind_hf.data.formats`) with decoded media (PIL images, audio arrays, lists of
frames), as `OpenMindDataset` yields them. Raw records are the data side's job: give `prepare` (e.g.
`openmind_hf.data.dataset.prepare_sample`), or use `openmind_hf.data.dataset.RecordCollator`, which does; this
module imports nothing from `openmind_hf.data` (processing stands alone, see STYLE.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from .errors import ProcessingError
from .processing_openmind import video_has_sound

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
MEDIA_KEYS = ("pixel_values", "input_features", "feature_attention_mask", "pixel_values_videos", "video_num_frames")
_MEDIA_TYPES = ("image", "audio", "video")


def _has_reasoning(sample: dict) -> bool:
    return any(m.get("reasoning_content") for m in sample["messages"] if m.get("role") == "assistant")


def _bind_media(sample: dict) -> list[dict]:
    """Messages whose media blocks hold their items (`{"type": "image", "image": PIL}`), as the processor takes."""
    queues = {kind: iter(sample.get(f"{kind}s") or []) for kind in _MEDIA_TYPES}
    messages = []
    for message in sample["messages"]:
        content = message["content"]
        if isinstance(content, list):
            content = [
                {**b, b["type"]: next(queues[b["type"]])}
                if b.get("type") in _MEDIA_TYPES and b["type"] not in b
                else b
                for b in content
            ]
        messages.append({**message, "content": content})
    return messages


class OpenMindCollator:
    """Turns a list of chat samples into a training batch.

    Args:
        processor (`OpenMindProcessor`): renders the chat template, expands placeholders, makes media features.
        max_length (`int`, *optional*): longest sample (padding) or row (packing) in tokens; `None` = no limit.
        packing (`bool`, *optional*, defaults to False): padding-free packing with `position_ids` (see module doc).
        truncation_policy (`str`, *optional*, defaults to `"drop"`): for samples over `max_length`: `"drop"` (and
            count) or `"keep"` whole. A sample is never cut.
        enable_thinking (`bool`, *optional*): render with the thinking switch on/off; `None` (default) turns it on
            exactly for samples whose assistant turns carry `reasoning_content`.
        on_error (`str`, *optional*, defaults to `"raise"`): a sample the processor rejects raises, or (`"skip"`)
            is dropped and recorded in `skip_report`.
        skip_report (`SkipReport`, *optional*): where dropped samples are recorded (too long, or rejected).
        pad_to_multiple_of (`int`, *optional*): pad the time dimension to a multiple of this.
        processor_kwargs (`dict`, *optional*): passed to the processor (e.g. `{"fps": 1}` for videos).
        prepare (`Callable[[dict], dict]`, *optional*): turns each incoming sample into a canonical, decoded one
            before encoding (the data side's normalising and decoding); what it raises goes through `on_error` like
            a processor rejection. Without it, samples must already be canonical and decoded.
    """

    def __init__(
        self,
        processor,
        max_length: int | None = None,
        packing: bool = False,
        truncation_policy: str = "drop",
        enable_thinking: bool | None = None,
        on_error: str = "raise",
        skip_report=None,
        pad_to_multiple_of: int | None = None,
        processor_kwargs: dict | None = None,
        prepare: Callable[[dict], dict] | None = None,
    ):
        if truncation_policy not in ("drop", "keep"):
            raise ValueError(f"truncation_policy must be 'drop' or 'keep', got {truncation_policy!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.processor = processor
        self.max_length, self.packing, self.truncation_policy = max_length, packing, truncation_policy
        self.enable_thinking, self.on_error, self.skip_report = enable_thinking, on_error, skip_report
        self.pad_to_multiple_of = pad_to_multiple_of
        self.processor_kwargs = dict(processor_kwargs or {})
        self.prepare = prepare
        self.pad_token_id = processor.tokenizer.pad_token_id
        # Running counts (per process; DataLoader workers keep their own).
        self.stats = {
            "samples": 0,
            "dropped_too_long": 0,
            "kept_too_long": 0,
            "rejected": 0,
            "tokens": 0,
            "pad_tokens": 0,
        }

    # ------------------------------------------------------------------------------------------ samples

    def _canonical(self, sample: dict) -> dict:
        """The sample after `prepare`, checked: canonical (`kind`, `messages`) with decoded media."""
        if self.prepare is not None:
            sample = self.prepare(sample)
        sample_id = sample.get("id") if isinstance(sample, dict) else None
        if not isinstance(sample, dict) or "kind" not in sample or "messages" not in sample:
            keys = sorted(sample) if isinstance(sample, dict) else type(sample).__name__
            raise ProcessingError(
                f"not a canonical sample (got {keys})",
                source="collator",
                sample_id=sample_id,
                hint="normalise raw records on the data side: OpenMindDataset, or "
                "openmind_hf.data.dataset.RecordCollator / prepare_sample",
            )
        for key in ("images", "audios", "videos"):
            for item in sample.get(key) or []:
                if isinstance(item, (str, dict, bytes)):
                    raise ProcessingError(
                        f"{key} hold an undecoded {type(item).__name__}",
                        source="collator",
                        sample_id=sample_id,
                        hint="decode media on the data side: OpenMindDataset, or "
                        "openmind_hf.data.dataset.RecordCollator / prepare_sample",
                    )
        return sample

    def encode(self, sample: dict) -> dict:
        """One sample -> `input_ids` [T], `labels` [T] and its media tensors (first dim = items or frames)."""
        sample = self._canonical(sample)
        thinking = _has_reasoning(sample) if self.enable_thinking is None else self.enable_thinking
        out = self.processor.apply_chat_template(
            _bind_media(sample),
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
            return_tensors="pt",
            enable_thinking=thinking,
            processor_kwargs=self.processor_kwargs or None,
        )
        input_ids = out["input_ids"][0]
        labels = torch.where(out["assistant_masks"][0].bool(), input_ids, IGNORE_INDEX)
        encoded = {"id": sample.get("id"), "input_ids": input_ids, "labels": labels}
        encoded.update({k: out[k] for k in MEDIA_KEYS if k in out})
        return encoded

    def _record(self, sample_id, reason: str) -> None:
        if self.skip_report is None:
            return
        self.skip_report.add(ProcessingError(reason, source="collator", sample_id=str(sample_id)))

    def _encode_group(self, samples: list[dict], thinking: bool) -> list[dict]:
        """Encode several canonical samples in ONE processor call (batched tokenizer and image/audio processing),
        then cut the padded result back into per-sample items."""
        out = self.processor.apply_chat_template(
            [_bind_media(s) for s in samples],
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
            return_tensors="pt",
            enable_thinking=thinking,
            processor_kwargs={**self.processor_kwargs, "padding": True, "padding_side": "right"},
        )
        lengths = out["attention_mask"].sum(-1).tolist()
        clips = self._clips_per_sample(samples, out)
        counts = {
            "pixel_values": [len(s.get("images") or []) for s in samples],
            "input_features": clips,
            "feature_attention_mask": clips,
            "video_num_frames": [len(s.get("videos") or []) for s in samples],
        }
        if "video_num_frames" in out:  # frames per sample = sum of its videos' sampled frames
            per_video = out["video_num_frames"].split(counts["video_num_frames"])
            counts["pixel_values_videos"] = [int(v.sum()) for v in per_video]
        parts = {key: out[key].split(counts[key]) for key in MEDIA_KEYS if key in out}
        items = []
        for i, (sample, n) in enumerate(zip(samples, lengths)):
            input_ids = out["input_ids"][i, :n]
            labels = torch.where(out["assistant_masks"][i, :n].bool(), input_ids, IGNORE_INDEX)
            item = {"id": sample.get("id"), "input_ids": input_ids, "labels": labels}
            item.update({key: part[i] for key, part in parts.items() if part[i].shape[0]})
            items.append(item)
        return items

    def _clips_per_sample(self, samples: list[dict], out) -> list[int]:
        """Audio clips per sample: its audios, plus one per heard video (frames then audio), or one per group of
        `video_temporal_pool` frames (`video_audio_layout="interleaved"`)."""
        heard = self.processor_kwargs.get("use_audio_in_video", False)
        interleaved = self.processor_kwargs.get("video_audio_layout") == "interleaved"
        pool = getattr(self.processor, "video_temporal_pool", 1)
        frames = iter(out["video_num_frames"].tolist() if "video_num_frames" in out else [])
        clips = []
        for sample in samples:
            count = len(sample.get("audios") or [])
            for video in sample.get("videos") or []:
                n = next(frames)
                if video_has_sound(video, heard):
                    count += -(-n // pool) if interleaved else 1
            clips.append(count)
        return clips

    def _encode_all(self, samples: list) -> list[dict]:
        """Encode a batch: one processor call per thinking mode; if a call fails, sample by sample, so that one bad
        sample is named (and, under `on_error="skip"`, dropped) without losing the others. The batch keeps its
        order (packing and the loss do not depend on it; reproducibility does)."""
        return [item for item in self._encode_each(samples) if item is not None]

    def _encode_each(self, samples: list) -> list[dict | None]:
        """`_encode_all`, one entry per input sample: its encoding, or None (a None input, or a rejected sample)."""
        canonical, by_mode = {}, {}
        for i, sample in enumerate(samples):
            if sample is None:
                continue
            try:
                canonical[i] = self._canonical(sample)
            except (ValueError, KeyError, TypeError) as err:
                self._reject(sample, err)
                continue
            mode = _has_reasoning(canonical[i]) if self.enable_thinking is None else self.enable_thinking
            by_mode.setdefault(mode, []).append(i)
        encoded: list[dict | None] = [None] * len(samples)
        for mode, indices in by_mode.items():
            group = [canonical[i] for i in indices]
            try:
                items = self._encode_group(group, mode)
            except (ValueError, KeyError, TypeError, RuntimeError):
                items = []
                for sample in group:
                    try:
                        items.append(self.encode(sample))
                    except (ValueError, KeyError, TypeError) as err:
                        self._reject(sample, err)
                        items.append(None)
            for i, item in zip(indices, items):
                encoded[i] = item
        return encoded

    def _reject(self, sample, err: Exception) -> None:
        sample_id = sample.get("id") if isinstance(sample, dict) else None
        if self.on_error == "raise":
            if isinstance(err, ProcessingError) and err.sample_id is not None:
                raise err  # already names its sample (e.g. a DataError from `prepare`)
            raise ProcessingError(f"rejected by the processor: {err}", source="collator", sample_id=sample_id) from err
        self.stats["rejected"] += 1
        self._record(sample_id, f"rejected by the processor: {err}")

    def _apply_length_policy(self, encoded: list[dict]) -> list[dict]:
        if self.max_length is None:
            return encoded
        kept = []
        for item in encoded:
            length = item["input_ids"].numel()
            if length <= self.max_length:
                kept.append(item)
            elif self.truncation_policy == "keep":
                self.stats["kept_too_long"] += 1
                kept.append(item)
            else:
                self.stats["dropped_too_long"] += 1
                self._record(item["id"], f"{length} tokens > max_length {self.max_length} (dropped, never cut)")
        if not kept and encoded:
            # An empty batch would crash the training step: keep the shortest sample whole instead.
            shortest = min(encoded, key=lambda item: item["input_ids"].numel())
            logger.warning(
                "every sample of a batch is over max_length=%d; keeping %s whole", self.max_length, shortest["id"]
            )
            kept = [shortest]
        return kept

    # -------------------------------------------------------------------------------------------- batch

    def _padded_length(self, length: int) -> int:
        m = self.pad_to_multiple_of
        return length if not m else -(-length // m) * m

    @staticmethod
    def _media(items: list[dict]) -> dict:
        batch = {}
        for key in MEDIA_KEYS:
            parts = [item[key] for item in items if key in item]
            if parts:
                batch[key] = torch.cat(parts)
        return batch

    def _pad(self, items: list[dict]) -> dict:
        width = self._padded_length(max(item["input_ids"].numel() for item in items))
        left = self.processor.tokenizer.padding_side == "left"
        input_ids = torch.full((len(items), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, item in enumerate(items):
            n = item["input_ids"].numel()
            span = slice(width - n, width) if left else slice(0, n)
            input_ids[row, span], labels[row, span], attention_mask[row, span] = item["input_ids"], item["labels"], 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels, **self._media(items)}

    def _rows(self, items: list[dict]) -> list[list[dict]]:
        """First-fit decreasing into rows of at most `max_length` tokens (one row when there is no limit)."""
        if self.max_length is None:
            return [items]
        rows: list[list[dict]] = []
        room: list[int] = []
        for item in sorted(items, key=lambda it: -it["input_ids"].numel()):
            n = item["input_ids"].numel()
            fit = next((r for r, free in enumerate(room) if free >= n), None)
            if fit is None:
                rows.append([item])
                room.append(self.max_length - n)
            else:
                rows[fit].append(item)
                room[fit] -= n
        return rows

    def _pack(self, items: list[dict]) -> dict:
        rows = self._rows(items)
        width = self._padded_length(max(sum(it["input_ids"].numel() for it in row) for row in rows))
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        position_ids = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            start = 0
            for item in row:
                n = item["input_ids"].numel()
                input_ids[r, start : start + n] = item["input_ids"]
                labels[r, start : start + n] = item["labels"]
                labels[r, start] = IGNORE_INDEX  # never learn a sample's first token from the previous sample
                position_ids[r, start : start + n] = torch.arange(n)
                start += n
            # Padding at the end of a row is its own "sample" (positions restart), so nothing attends into it.
            position_ids[r, start:] = torch.arange(width - start)
        ordered = [item for row in rows for item in row]
        return {
            "input_ids": input_ids,
            "labels": labels,
            "position_ids": position_ids,
            "use_cache": False,  # a KV cache would switch off the per-sample masks built from position_ids
            **self._media(ordered),
        }

    def __call__(self, samples: list[Any]) -> dict:
        items = self._apply_length_policy(self._encode_all(samples))
        if not items:
            raise ProcessingError(
                "no sample of this batch could be encoded", source="collator", hint="see the skip report"
            )
        batch = self._pack(items) if self.packing else self._pad(items)
        real = sum(item["input_ids"].numel() for item in items)
        self.stats["samples"] += len(items)
        self.stats["tokens"] += batch["input_ids"].numel()
        self.stats["pad_tokens"] += batch["input_ids"].numel() - real
        return batch

    @property
    def padding_waste(self) -> float:
        """Pad tokens / all tokens over every batch this collator built (in this process)."""
        return self.stats["pad_tokens"] / max(1, self.stats["tokens"])


__all__ = ["IGNORE_INDEX", "OpenMindCollator"]
