"""From generated token ids to the two texts the API returns: `reasoning_content` and `content`.

One `CompletionText` per sequence receives tokens as they are generated and yields text deltas, so that streamed
and non-streamed answers are produced by the same code and always agree:
- incremental detokenisation that never emits half a UTF-8 character (the offsets trick vLLM uses);
- the thinking split: with thinking on, text up to `</think>` is reasoning (a leading `<think>` is dropped, the
  reasoning is stripped), the rest is the answer. When the prompt did not open the block itself, the text is
  reasoning only if the model starts it with `<think>` (the rule `ThinkingBudgetLogitsProcessor` follows too).
  With thinking off, OpenMind's `generate` never writes a block; should another model start one anyway, it is
  dropped, so the answer holds no thinking text either way;
- stop strings, matched on the answer only, never emitted, with a partial match held back until it is decided.
"""

from __future__ import annotations

THINK_START, THINK_END = "<think>", "</think>"


class IncrementalDetokenizer:
    """Token ids in, new text out. Decodes a short window `ids[prefix:]` and emits what goes beyond
    `ids[prefix:read]`, waiting while the tail is an incomplete character (U+FFFD)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = self.read = 0

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix : self.read], skip_special_tokens=True)
        after = decode(self.ids[self.prefix :], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before) :]
        return ""


def _held_suffix(text: str, markers: list[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of one of `markers`."""
    best = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), best, -1):
            if text.endswith(marker[:size]):
                best = size
                break
    return best


class CompletionText:
    r"""
    Splits one sequence's generated text into reasoning and answer deltas, and finds stop strings.

    Args:
        thinking (`bool`): thinking is on (off: a leading `<think>` block is dropped from the text).
        opens_thinking (`bool`, *optional*, defaults to True): the prompt already opened the `<think>` block, so the
            text starts as reasoning. Otherwise it is reasoning only if the model starts it with `<think>`.
        stop (`list[str]`, *optional*): strings that end the answer (they are not returned).
    """

    def __init__(self, thinking: bool, opens_thinking: bool = True, stop: list[str] | None = None):
        self.mode = "reasoning" if thinking and opens_thinking else "undecided"
        self.keep_reasoning = thinking  # thinking off: a block the model writes anyway is dropped, not returned
        self.stop = list(stop or [])
        self.pending = ""  # text not yet emitted: a possible marker / stop prefix or held whitespace
        self.started = {"reasoning": False, "content": False}
        self.stopped = False
        self.reasoning = ""
        self.content = ""

    @property
    def in_reasoning(self) -> bool:
        return self.mode == "reasoning"

    def feed(self, text: str) -> list[tuple[str, str]]:
        """New text -> [(kind, delta)] with kind "reasoning" or "content"; empty once a stop string was seen."""
        if self.stopped:
            return []
        self.pending += text
        out: list[tuple[str, str]] = []
        while self.pending and not self.stopped:
            if self.mode == "undecided" and not self._decide():
                break
            if self.mode == "reasoning":
                if not self._reasoning_step(out):
                    break
            elif self.mode == "content":
                self._content_step(out)
                break
        return out

    def finish(self) -> list[tuple[str, str]]:
        """The end of the sequence: whatever was held back is final (a trailing partial stop is answer text)."""
        out: list[tuple[str, str]] = []
        if not self.stopped and self.pending:
            if self.mode == "reasoning":
                self._emit(out, "reasoning", self.pending.strip())
            else:
                self._emit(out, "content", self.pending if self.started["content"] else self.pending.lstrip())
        self.pending = ""
        return out

    def _decide(self) -> bool:
        """Undecided (block not opened by the prompt): `<think>` first means reasoning follows."""
        stripped = self.pending.lstrip()
        if not stripped or (THINK_START.startswith(stripped) and stripped != THINK_START):
            return False  # nothing yet, or maybe the start of `<think>`: wait
        self.mode = "reasoning" if stripped.startswith(THINK_START) else "content"
        return True

    def _reasoning_step(self, out) -> bool:
        text = self.pending
        if not self.started["reasoning"]:
            stripped = text.lstrip()
            if THINK_START.startswith(stripped) and stripped != THINK_START:
                return False  # maybe the start of `<think>`: wait
            if stripped.startswith(THINK_START):
                stripped = stripped[len(THINK_START) :]
            text = stripped.lstrip()
        end = text.find(THINK_END)
        if end >= 0:
            self._emit(out, "reasoning", text[:end].rstrip())
            self.mode = "content"
            self.pending = text[end + len(THINK_END) :]
            return True
        # Hold a possible `</think>` prefix and trailing whitespace (stripped if the block ends right after).
        keep = _held_suffix(text, [THINK_END])
        body, tail = text[: len(text) - keep], text[len(text) - keep :]
        emit = body.rstrip()
        self._emit(out, "reasoning", emit)
        self.pending = body[len(emit) :] + tail
        return False

    def _content_step(self, out) -> None:
        text = self.pending
        if not self.started["content"]:
            text = text.lstrip()
        hits = [(text.find(s), s) for s in self.stop if s in text]
        if hits:
            self._emit(out, "content", text[: min(hits)[0]])
            self.pending, self.stopped = "", True
            return
        keep = _held_suffix(text, self.stop)
        self._emit(out, "content", text[: len(text) - keep])
        self.pending = text[len(text) - keep :]

    def _emit(self, out, kind: str, delta: str) -> None:
        if not delta or (kind == "reasoning" and not self.keep_reasoning):
            return
        self.started[kind] = True
        setattr(self, kind, getattr(self, kind) + delta)
        out.append((kind, delta))


__all__ = ["THINK_START", "THINK_END", "IncrementalDetokenizer", "CompletionText"]
