"""uvicorn's h11 protocol with a deadline on the request head: a client must finish sending its request line and
headers within `header_timeout_s` of connecting (or of its previous response), or the connection is closed.

uvicorn has no such timeout (its `timeout_keep_alive` is disarmed by the first byte of a new request, so a client
sending one header byte per second keeps a connection forever), and h11 only bounds the head's size. The body has
its own deadline in `guard.RequestGuard`, which reads it before any concurrency slot is taken.
"""

from __future__ import annotations

import asyncio
import os

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_ENV = "OPENMIND_HEADER_TIMEOUT_S"
DEFAULT_HEADER_TIMEOUT_S = 10.0


class HeaderDeadlineH11Protocol(H11Protocol):
    """`H11Protocol` plus the request-head deadline. The class attribute is the deadline in seconds; uvicorn worker
    processes (`--workers N`) read it from the `OPENMIND_HEADER_TIMEOUT_S` environment variable."""

    header_timeout_s: float = float(os.environ.get(HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT_S))
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_deadline()  # a kept-alive connection owes the next head within the same deadline

    def connection_lost(self, exc) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        if not self.transport.is_closing():
            self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_deadline_expired)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_deadline_expired(self) -> None:
        self._head_deadline = None
        # IDLE: no complete request head yet (a request being answered or a body being read is past IDLE).
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def protocol_with_header_timeout(seconds: float) -> type[HeaderDeadlineH11Protocol]:
    """A `HeaderDeadlineH11Protocol` subclass with its own deadline, for one in-process server (`http=` of
    `uvicorn.Config`)."""
    if seconds <= 0:
        raise ValueError(f"header timeout must be > 0 seconds, got {seconds}.")
    return type("HeaderDeadlineH11Protocol", (HeaderDeadlineH11Protocol,), {"header_timeout_s": float(seconds)})


__all__ = ["HEADER_TIMEOUT_ENV", "HeaderDeadlineH11Protocol", "protocol_with_header_timeout"]
