"""Record formats: every accepted input record becomes ONE canonical sample.

Accepted records:

- pretraining: `{"text": caption, "image": path, "metadata": {...}}`;
- instruction: `{"conversations": [{"from": "user"|"human"|"assistant"|"gpt"|"system", "value": str}], "image": path}`
  with `<image>` / `<audio>` / `<video>` placeholders in the text;
- both extended with `audio`, `video`, and lists (`images`, `audios`, `videos`, or a list under `image`/`audio`);
- Hugging Face chat: `{"messages": [{"role", "content": str | [blocks]}], "images": [...], "audios": [...]}`.

A video item may be a dict `{"path": ..., "start": s, "end": s, "audio": true, "missing_audio": "silence"}`: frames
(and, with `"audio": true` or the recipes' `--use_audio_in_video`, its sound) come from the `[start, end)` span;
`openmind_hf.data.media.load_video_frames` documents the keys.

The canonical sample is::

    {"id": str, "kind": "pretrain" | "instruct",
     "messages": [{"role": ..., "content": [{"type": "image"|"audio"|"video"|"text", ...}], "reasoning_content"?}],
     "images": [...], "audios": [...], "videos": [...], "metadata": {...}}

Media blocks carry no payload; the i-th image block is `images[i]` (the TRL convention). A pretraining record
becomes a user turn holding only its media and an assistant turn holding the caption, so "label the assistant turn"
means "label the caption tokens". Inline `<think>...</think>` at the start of an assistant text moves to
`reasoning_content`.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import DataError

MEDIA_TYPES = ("image", "audio", "video")
PLACEHOLDERS: dict[str, str] = {kind: f"<{kind}>" for kind in MEDIA_TYPES}
ROLE_ALIASES: dict[str, str] = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "system": "system",
}
# Top-level keys that hold media, in the order their blocks go into a pretraining user turn.
_MEDIA_KEYS: dict[str, tuple[str, str]] = {
    "image": ("image", "images"),
    "audio": ("audio", "audios"),
    "video": ("video", "videos"),
}
_FORMAT_KEYS = {"id", "text", "conversations", "messages", "metadata"} | {
    k for pair in _MEDIA_KEYS.values() for k in pair
}
_PLACEHOLDER_RE = re.compile("(" + "|".join(re.escape(p) for p in PLACEHOLDERS.values()) + ")")
_THINK_RE = re.compile(r"^\s*<think>(.*?)</think>\s*", re.DOTALL)
_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _collect_media(record: dict, err) -> dict[str, list]:
    media = {}
    for kind, (single, plural) in _MEDIA_KEYS.items():
        items = _as_list(record.get(single)) + _as_list(record.get(plural))
        for i, item in enumerate(items):
            if item is None or (isinstance(item, str) and not item.strip()):
                raise err(f"{kind} #{i + 1} is empty", "give a path, or remove the entry")
        media[kind] = items
    return media


def split_placeholders(text: str) -> list[dict]:
    """`"<image>\\nWhat is it?"` -> `[{"type": "image"}, {"type": "text", "text": "What is it?"}]`.

    Whitespace next to a placeholder is dropped (LLaVA writes `"<image>\\n"`): the chat template lays out blocks.
    """
    pieces = _PLACEHOLDER_RE.split(text)
    if len(pieces) == 1:
        return [{"type": "text", "text": text}] if text.strip() else []
    blocks = []
    for piece in pieces:
        if piece in PLACEHOLDERS.values():
            blocks.append({"type": piece[1:-1]})
        elif piece.strip():
            blocks.append({"type": "text", "text": piece.strip()})
    return blocks


def _split_thinking(text: str) -> tuple[str | None, str]:
    match = _THINK_RE.match(text)
    if match is None:
        return None, text
    return match.group(1).strip(), text[match.end() :]


def _role(raw: Any, turn: int, err) -> str:
    role = ROLE_ALIASES.get(str(raw).strip().lower()) if raw is not None else None
    if role is None:
        raise err(f"turn {turn} has unknown role {raw!r}", f"use one of {sorted(ROLE_ALIASES)}")
    return role


def _assistant_message(text: str, reasoning: Any) -> dict:
    inline, text = _split_thinking(text)
    message = {"role": "assistant", "content": [{"type": "text", "text": text.strip()}]}
    reasoning = reasoning if reasoning is not None else inline
    if reasoning is not None:
        message["reasoning_content"] = str(reasoning)
    return message


def _text_turn(role: str, text: Any, turn: int, reasoning: Any, err) -> dict:
    if not isinstance(text, str):
        raise err(
            f"turn {turn} ({role}) has a {type(text).__name__} value, not text", "give the turn's text as a string"
        )
    if role == "assistant":
        if _PLACEHOLDER_RE.search(text):
            raise err(f"turn {turn} (assistant) contains a media placeholder", "put media only in user/system turns")
        return _assistant_message(text, reasoning)
    return {"role": role, "content": split_placeholders(text)}


def _content_blocks(role: str, content: Any, turn: int, inline: dict[str, list], err) -> list:
    """HF `content` (str or list of blocks) -> payload-free blocks; inline payloads go to `inline[kind]`."""
    if isinstance(content, str):
        return split_placeholders(content)
    if not isinstance(content, list):
        raise err(
            f"turn {turn} ({role}) has content of type {type(content).__name__}", "use a string or a list of blocks"
        )
    blocks = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            blocks.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind in MEDIA_TYPES:
            payload = next((block[k] for k in (kind, "url", "path") if block.get(k) is not None), None)
            if payload is not None:
                inline[kind].append(payload)
            blocks.append({"type": kind})
        else:
            raise err(
                f"turn {turn} ({role}) has a content block of unknown type {kind!r}", "use text/image/audio/video"
            )
    return blocks


def _messages_from_hf(record: dict, media: dict[str, list], err) -> list[dict]:
    inline: dict[str, list] = {kind: [] for kind in MEDIA_TYPES}
    messages = []
    for turn, message in enumerate(_as_list(record["messages"]), start=1):
        if not isinstance(message, dict):
            raise err(f"turn {turn} is a {type(message).__name__}, not a message dict", "use {'role', 'content'}")
        role = _role(message.get("role"), turn, err)
        blocks = _content_blocks(role, message.get("content"), turn, inline, err)
        if role == "assistant":
            if any(b["type"] != "text" for b in blocks):
                raise err(f"turn {turn} (assistant) contains media", "put media only in user/system turns")
            text = "".join(b["text"] for b in blocks)
            reasoning = next((message[k] for k in _REASONING_KEYS if message.get(k) is not None), None)
            messages.append(_assistant_message(text, reasoning))
        else:
            messages.append({"role": role, "content": blocks})
    for kind in MEDIA_TYPES:
        if inline[kind] and media[kind]:
            raise err(
                f"{kind}s are given both inside the content blocks and in the {kind}s column",
                "give each one in exactly one place",
            )
        media[kind] = media[kind] or inline[kind]
    return messages


def _messages_from_conversations(record: dict, err) -> list[dict]:
    conversation = record["conversations"]
    if not isinstance(conversation, list):
        raise err(f"'conversations' is a {type(conversation).__name__}, not a list", "give a list of turns")
    messages = []
    for turn, item in enumerate(conversation, start=1):
        if not isinstance(item, dict):
            raise err(f"turn {turn} is a {type(item).__name__}, not a dict", 'use {"from": ..., "value": ...}')
        role = _role(item.get("from", item.get("role")), turn, err)
        reasoning = next((item[k] for k in _REASONING_KEYS if item.get(k) is not None), None)
        messages.append(_text_turn(role, item.get("value", item.get("content")), turn, reasoning, err))
    return messages


def _check_counts(messages: list[dict], media: dict[str, list], err) -> None:
    for kind in MEDIA_TYPES:
        blocks = sum(b["type"] == kind for m in messages for b in m["content"])
        if blocks != len(media[kind]):
            raise err(
                f"{blocks} {PLACEHOLDERS[kind]} placeholder(s) but {len(media[kind])} {kind}(s)",
                f"put exactly one {PLACEHOLDERS[kind]} in the text for each {kind}, in order",
            )


def normalize_record(record: dict, *, source: str | None = None, line: int | None = None) -> dict:
    """Turn one input record (pretraining, instruction or HF messages) into the canonical sample.

    Args:
        record (`dict`): the raw record.
        source (`str`, *optional*): where it came from, for error messages and the default id.
        line (`int`, *optional*): its line (JSONL, 1-based) or index (other sources), idem.

    Returns:
        `dict`: the canonical sample (see the module docstring). Media entries are left as given (paths, bytes,
        PIL images, arrays); `openmind_hf.data.media.decode_sample_media` decodes them.

    Raises:
        `DataError`: unknown roles, empty conversations, no assistant turn, placeholder/media count mismatch, ...
    """
    raw_id = record.get("id") if isinstance(record, dict) else None
    sample_id = str(raw_id) if raw_id is not None else f"{source or 'record'}:{line}"

    def err(reason: str, hint: str | None = None) -> DataError:
        return DataError(reason, source=source, line=line, sample_id=sample_id, hint=hint)

    if not isinstance(record, dict):
        raise err(f"the record is a {type(record).__name__}, not a JSON object", "write one object per record")
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise err(f"'metadata' is a {type(metadata).__name__}, not an object", "give metadata as a JSON object")
    # Extra top-level fields (LLaVA's "model", a QA "answer", ...) are kept in metadata for evaluation.
    metadata = {**{k: v for k, v in record.items() if k not in _FORMAT_KEYS}, **metadata}
    media = _collect_media(record, err)

    if "messages" in record:
        kind, messages = "instruct", _messages_from_hf(record, media, err)
    elif "conversations" in record:
        kind, messages = "instruct", _messages_from_conversations(record, err)
    elif "text" in record:
        text = record["text"]
        if not isinstance(text, str) or not text.strip():
            raise err("'text' is empty or not a string", "give the caption as non-empty text")
        if _PLACEHOLDER_RE.search(text):
            raise err("a pretraining 'text' contains a media placeholder", "use the 'conversations' format instead")
        user = [{"type": kind} for kind in MEDIA_TYPES for _ in media[kind]]
        kind = "pretrain"
        messages = [{"role": "user", "content": user}, _assistant_message(text, None)]
    else:
        raise err(
            f"the record has none of 'text', 'conversations', 'messages' (keys: {sorted(record)})",
            "use the pretraining, instruction or HF messages format",
        )

    if not messages:
        raise err("the conversation is empty", "give at least one user and one assistant turn, or drop the record")
    if not any(m["role"] == "assistant" for m in messages):
        raise err("the conversation has no assistant turn", "add the answer as an assistant turn")
    if kind == "instruct":
        _check_counts(messages, media, err)
    return {
        "id": sample_id,
        "kind": kind,
        "messages": messages,
        "images": media["image"],
        "audios": media["audio"],
        "videos": media["video"],
        "metadata": metadata,
    }


def messages_with_media(sample: dict) -> list[dict]:
    """The sample's messages with each media block holding its item (`{"type": "image", "image": PIL}`).

    This is the form `processor.apply_chat_template` takes; the canonical sample keeps the TRL form
    (payload-free blocks + `images` / `audios` / `videos` lists).
    """
    queues = {kind: iter(sample.get(f"{kind}s") or []) for kind in MEDIA_TYPES}
    messages = []
    for message in sample["messages"]:
        content = message["content"]
        if isinstance(content, list):
            content = [{**b, b["type"]: next(queues[b["type"]])} if b["type"] in MEDIA_TYPES else b for b in content]
        messages.append({**message, "content": content})
    return messages


__all__ = [
    "MEDIA_TYPES",
    "PLACEHOLDERS",
    "ROLE_ALIASES",
    "messages_with_media",
    "normalize_record",
    "split_placeholders",
]
