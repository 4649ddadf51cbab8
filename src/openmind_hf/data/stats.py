"""`openmind data check --stats`: what a dataset looks like to the model.

- token lengths (a histogram and percentiles) as the model's processor encodes each sample: chat template, media
  placeholders expanded to their token runs;
- media counts per modality;
- a preview of a few samples as the model sees them: the rendered prompt, with the tokens the loss trains on (the
  assistant turns, or a caption) between `[[` and `]]`, and runs of media tokens shortened to `<image>x64`.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from ..processing.collator import IGNORE_INDEX, OpenMindCollator

LABEL_OPEN, LABEL_CLOSE = "[[", "]]"
_RUN_RE = re.compile(r"(<(?:image|audio|video)>)(?:\1)+")


class DatasetStats:
    """Accumulates token lengths, media counts and previews over samples with decoded media.

    Args:
        processor (`ProcessorMixin`): the model's processor (chat template, tokenizer, media token counts).
        max_samples (`int`, *optional*, defaults to 2000): tokenize at most this many samples (media are counted
            for all); the result says how many were tokenized.
        num_previews (`int`, *optional*, defaults to 3): samples rendered for the preview.
        max_length (`int`, *optional*): count samples longer than this many tokens.
    """

    def __init__(self, processor, max_samples: int = 2000, num_previews: int = 3, max_length: int | None = None):
        self.collator = OpenMindCollator(processor)
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.max_samples, self.num_previews, self.max_length = max_samples, num_previews, max_length
        self.lengths: list[int] = []
        self.media: Counter = Counter()
        self.previews: list[str] = []

    def add(self, sample: dict) -> None:
        for kind in ("image", "audio", "video"):
            n = len(sample.get(f"{kind}s") or [])
            self.media[f"{kind}s"] += n
            self.media[f"samples_with_{kind}"] += n > 0
        if len(self.lengths) >= self.max_samples:
            return
        encoded = self.collator.encode(sample)
        self.lengths.append(int(encoded["input_ids"].shape[0]))
        if len(self.previews) < self.num_previews:
            self.previews.append(f"--- {sample.get('id')} ({self.lengths[-1]} tokens)\n{self.render(encoded)}")

    def render(self, encoded: dict) -> str:
        """The encoded sample as text, labelled spans between `[[` and `]]`, media token runs shortened."""
        ids, labels = encoded["input_ids"].tolist(), encoded["labels"].tolist()
        pieces, start = [], 0
        for i in range(1, len(ids) + 1):
            if i == len(ids) or (labels[i] != IGNORE_INDEX) != (labels[start] != IGNORE_INDEX):
                text = self.tokenizer.decode(ids[start:i], skip_special_tokens=False)
                text = _RUN_RE.sub(lambda m: f"{m.group(1)}x{len(m.group(0)) // len(m.group(1))}", text)
                pieces.append(f"{LABEL_OPEN}{text}{LABEL_CLOSE}" if labels[start] != IGNORE_INDEX else text)
                start = i
        return "".join(pieces)

    def to_dict(self) -> dict:
        lengths = sorted(self.lengths)
        result = {"media": dict(self.media), "tokenized": len(lengths)}
        if not lengths:
            return result

        def pct(q: float) -> int:
            return lengths[min(len(lengths) - 1, int(q * len(lengths)))]

        result["token_lengths"] = {
            "min": lengths[0],
            "p50": pct(0.5),
            "p90": pct(0.9),
            "p99": pct(0.99),
            "max": lengths[-1],
            "histogram": histogram(lengths),
        }
        if self.max_length is not None:
            result["token_lengths"]["over_max_length"] = sum(n > self.max_length for n in lengths)
        result["preview"] = self.previews
        return result


def histogram(lengths: list[int]) -> list[dict]:
    """Counts per power-of-two bin: `{"range": "65-128", "count": n}` for the bins in use."""
    bins = Counter(max(0, math.ceil(math.log2(max(n, 1)))) for n in lengths)
    return [{"range": f"{2 ** (b - 1) + 1 if b else 0}-{2**b}", "count": bins[b]} for b in sorted(bins)]


def format_histogram(stats: dict, width: int = 40) -> str:
    """The histogram as text bars, for the terminal."""
    rows = stats.get("token_lengths", {}).get("histogram", [])
    top = max((r["count"] for r in rows), default=1)
    return "\n".join(f"{r['range']:>12} {r['count']:>7} {'#' * max(1, r['count'] * width // top)}" for r in rows)


__all__ = ["LABEL_CLOSE", "LABEL_OPEN", "DatasetStats", "format_histogram", "histogram"]
