"""API errors in the OpenAI shape, and exception summaries that are safe to log.

Every message a client or a log sees is written by us: third-party exception texts are never passed on, because
they can quote the payload (pydantic's `input_value=...`) or hold memory addresses (`<_io.BytesIO object at 0x..>`).
Validation errors name the field by position (`messages[1].content[0].image_url`), using only the schema's own
field names (a key the client invented is `<unknown field>`), and describe the problem from a fixed vocabulary.
"""

from __future__ import annotations

import os
import re
import traceback

# Pydantic error type -> our wording. Only these words reach the client: pydantic's own messages can quote the
# input (`union_tag_invalid` repeats the client's tag) and would change with pydantic versions anyway.
_ERROR_WORDS = {
    "missing": "required field missing",
    "extra_forbidden": "unknown field; remove it",
    "union_tag_invalid": "unsupported `type`; use text, image_url, input_audio or video_url",
    "union_tag_not_found": "a content part needs a `type` field",
    "literal_error": "not one of the allowed values",
    "enum": "not one of the allowed values",
    "json_invalid": "the body is not valid JSON",
    "json_type": "the body is not valid JSON",
    "string_type": "expected a string",
    "string_too_short": "too short",
    "string_too_long": "too long",
    "too_short": "too few items",
    "too_long": "too many items",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected an object",
    "model_type": "expected an object",
    "model_attributes_type": "expected an object",
    "greater_than": "too small",
    "greater_than_equal": "too small",
    "less_than": "too large",
    "less_than_equal": "too large",
    "none_required": "must be null",
}
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")


class APIError(Exception):
    r"""
    An error answered to the client as `{"error": {"message", "type", "param", "code"}}` with an HTTP status.

    Args:
        status (`int`): HTTP status code (4xx for the client's mistakes, 5xx for ours).
        message (`str`): what went wrong and what to do; must never quote the request payload.
        type (`str`, *optional*, defaults to `"invalid_request_error"`): the OpenAI error type.
        param (`str`, *optional*): the request field at fault.
        code (`str`, *optional*): a machine-readable code.
        headers (`dict`, *optional*): extra response headers (e.g. `Retry-After`).
    """

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def field_path(loc: tuple, known_fields: frozenset[str]) -> str:
    """`("messages", 1, "content", 0, "image_url")` -> `messages[1].content[0].image_url`. Only names in
    `known_fields` are spelled out; anything else (a client's own key, pydantic's union labels such as `str` or
    `list[...]`) is either dropped (union labels) or written `<unknown field>`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in known_fields:
            path += f".{part}" if path else part
        elif "[" in part or part in ("str", "int", "float", "bool", "list", "dict", "none", "function-after"):
            continue  # pydantic's label for a union member, not a key the client sent
        else:
            path += ".<unknown field>" if path else "<unknown field>"
    return path


def describe_validation_errors(errors: list[dict], limit: int = 5, known_fields: frozenset[str] | None = None) -> str:
    """Pydantic `errors(include_input=False)` -> one line naming each field by position and the problem in a fixed
    vocabulary, without anything the client chose (values, key names, MIME types).

    Args:
        errors (`list[dict]`): pydantic's error list.
        limit (`int`, *optional*, defaults to 5): errors described; the rest are counted.
        known_fields (`frozenset[str]`, *optional*): field names that may be spelled out; defaults to every field
            of the chat-completions request schema.
    """
    if known_fields is None:
        from .schemas import FIELD_NAMES

        known_fields = FIELD_NAMES
    parts = []
    for err in errors[:limit]:
        location = field_path(err["loc"], known_fields)
        if err["type"] == "value_error":  # raised by our own validators: their messages are ours
            message = _ADDRESS.sub("<address>", str(err["msg"]))[:200].removeprefix("Value error, ")
        else:
            message = _ERROR_WORDS.get(err["type"], "invalid value")
        parts.append(f"{location}: {message}" if location else message)
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return "Invalid request: " + "; ".join(parts) + more


def describe_exception(exc: BaseException) -> str:
    """`ValueError at engine.py:120 in _run <- ...`: the type and where it was raised, never the message (which may
    quote user data) -- enough to find the bug in the source without leaking anything."""
    frames = traceback.extract_tb(exc.__traceback__)[-4:]
    where = " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}" for f in reversed(frames))
    return f"{type(exc).__name__} at {where}" if where else type(exc).__name__


__all__ = ["APIError", "bad_request", "describe_exception", "describe_validation_errors", "field_path"]
