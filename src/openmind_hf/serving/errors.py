"""API errors in the OpenAI shape, and exception summaries that are safe to log.

Every message a client or a log sees is written by us: third-party exception texts are never passed on, because
they can quote the payload (pydantic's `input_value=...`) or hold memory addresses (`<_io.BytesIO object at 0x..>`).
"""

from __future__ import annotations

import os
import re
import traceback

# Pydantic error types whose message template quotes the client's input; they get our own wording instead.
_QUOTING_ERROR_TYPES = {
    "union_tag_invalid": "unsupported `type`; expected one of the listed content part types",
    "union_tag_not_found": "a content part needs a `type` field",
    "json_invalid": "the body is not valid JSON",
    "json_type": "the body is not valid JSON",
}
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")
_SAFE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


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


def describe_validation_errors(errors: list[dict], limit: int = 5) -> str:
    """Pydantic `errors(include_input=False)` -> one line naming each field and problem, without any input values."""
    parts = []
    for err in errors[:limit]:
        location = ".".join(str(p) if isinstance(p, int) or _SAFE_KEY.match(str(p)) else "<key>" for p in err["loc"])
        message = _QUOTING_ERROR_TYPES.get(err["type"]) or _ADDRESS.sub("<address>", str(err["msg"]))[:200]
        message = message.removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return "Invalid request: " + "; ".join(parts) + more


def describe_exception(exc: BaseException) -> str:
    """`ValueError at engine.py:120 in _run <- ...`: the type and where it was raised, never the message (which may
    quote user data) -- enough to find the bug in the source without leaking anything."""
    frames = traceback.extract_tb(exc.__traceback__)[-4:]
    where = " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}" for f in reversed(frames))
    return f"{type(exc).__name__} at {where}" if where else type(exc).__name__


__all__ = ["APIError", "bad_request", "describe_validation_errors", "describe_exception"]
