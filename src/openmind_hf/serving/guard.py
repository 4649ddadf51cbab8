"""The ASGI middleware in front of every route: API key, body size, body deadline, concurrency limit, access log,
last-resort 500.

It is plain ASGI (not `BaseHTTPMiddleware`) so that a request counts as in flight until its last byte, streamed
responses included, and so that refusals (401, 413) are answered before the body is read or any work starts. On the
limited paths the whole body is read, within `body_timeout_s`, before a concurrency slot is taken: a client that
trickles its body (or never finishes it) holds only its own connection, never one of the `max_concurrent` slots.
Unexpected exceptions stop here: the client gets a 500 with a request id, the log gets the exception type and
where it was raised, and neither gets the exception text (uvicorn would log it, payload fragments included).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import APIError, describe_exception

logger = logging.getLogger("openmind_hf.serving")
_PRINTABLE = re.compile(r"[^\x21-\x7e]")


async def send_error(send, error: APIError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class GuardCounters:
    """Live counters of a `RequestGuard` (kept on `app.state.counters`)."""

    in_flight: int = 0
    peak_in_flight: int = 0
    rejected: int = 0  # 429s answered


class RequestGuard:
    r"""
    Args:
        app (`ASGIApp`): the wrapped application.
        api_key (`str`, *optional*): required as `Authorization: Bearer <key>` on every path but `open_paths`.
        max_body_bytes (`int`): a declared `Content-Length` above this is refused with 413 before reading.
        max_concurrent (`int`): requests to `limited_paths` in flight at once; more get 429 at once.
        limited_paths (`Iterable[str]`): paths that count against `max_concurrent`.
        open_paths (`Iterable[str]`, *optional*, defaults to `("/health",)`): paths that need no API key.
        counters (`GuardCounters`, *optional*): where the in-flight counts are kept.
        body_timeout_s (`float`, *optional*, defaults to 10): the body of a request to `limited_paths` must arrive
            within this many seconds, or the answer is 408.
    """

    def __init__(
        self,
        app,
        api_key: str | None,
        max_body_bytes: int,
        max_concurrent: int,
        limited_paths: Iterable[str],
        open_paths: Iterable[str] = ("/health",),
        counters: GuardCounters | None = None,
        body_timeout_s: float = 10.0,
    ):
        self.app = app
        self.expected = f"Bearer {api_key}".encode() if api_key else None
        self.max_body_bytes, self.max_concurrent = max_body_bytes, max_concurrent
        self.limited_paths, self.open_paths = frozenset(limited_paths), frozenset(open_paths)
        self.counters = counters if counters is not None else GuardCounters()
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started, status = time.monotonic(), []

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await send_error(send_with_id, refusal)
            elif scope["path"] in self.limited_paths:
                await self._limited(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception as exc:
            logger.error("request %s failed: %s", request_id, describe_exception(exc))
            if not status:
                error = APIError(500, f"Internal server error (request id {request_id}).", type="server_error")
                await send_error(send_with_id, error)
        finally:
            elapsed = time.monotonic() - started
            code = status[0] if status else 0
            path = _PRINTABLE.sub("?", scope["path"][:200])  # no control characters: one request, one log line
            logger.info("%s %s %d %.3fs id=%s", scope["method"], path, code, elapsed, request_id)

    def _refusal(self, scope) -> APIError | None:
        headers = dict(scope["headers"])
        if self.expected is not None and scope["path"] not in self.open_paths:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                return APIError(
                    401,
                    "Missing or invalid API key: send `Authorization: Bearer <key>`.",
                    type="authentication_error",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        declared = headers.get(b"content-length", b"")
        if declared and not declared.isdigit():
            return APIError(400, "Invalid Content-Length header.")
        if declared and int(declared) > self.max_body_bytes:
            return APIError(413, f"The request body is larger than the {self.max_body_bytes}-byte limit.")
        return None

    async def _read_body(self, receive) -> bytes | None:
        """The whole body, or None when the client went away; raises `APIError` 413 past `max_body_bytes`."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:  # chunked bodies declare no length up front
                raise APIError(413, f"The request body is larger than the {self.max_body_bytes}-byte limit.")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _limited(self, scope, receive, send) -> None:
        try:
            body = await asyncio.wait_for(self._read_body(receive), timeout=self.body_timeout_s)
        except asyncio.TimeoutError:
            error = APIError(408, "The request body was not received in time.", code="request_timeout")
            return await send_error(send, error)
        except APIError as error:
            return await send_error(send, error)
        if body is None:
            return None  # the client is gone: nothing to answer
        replayed = False

        async def replay():
            # The app reads the buffered body; after that, receive() waits for the client to disconnect as usual.
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        # No await between the check and the increment: the event loop cannot interleave another request here.
        counters = self.counters
        if counters.in_flight >= self.max_concurrent:
            counters.rejected += 1
            error = APIError(
                429,
                f"The server is at its limit of {self.max_concurrent} concurrent requests; retry shortly.",
                type="rate_limit_error",
                code="too_many_requests",
                headers={"Retry-After": "1"},
            )
            return await send_error(send, error)
        counters.in_flight += 1
        counters.peak_in_flight = max(counters.peak_in_flight, counters.in_flight)
        try:
            await self.app(scope, replay, send)
        finally:
            counters.in_flight -= 1


__all__ = ["GuardCounters", "RequestGuard", "send_error"]
