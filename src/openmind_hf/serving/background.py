"""A real uvicorn server for an ASGI app, on a free 127.0.0.1 port in a background thread (tests, notebooks).

with BackgroundServer(app) as server:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=...)
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from .protocol import DEFAULT_HEADER_TIMEOUT_S, protocol_with_header_timeout


class BackgroundServer:
    r"""
    Args:
        app (`ASGIApp`): the application to serve.
        host (`str`, *optional*, defaults to `"127.0.0.1"`): loopback unless you mean otherwise.
        port (`int`, *optional*, defaults to 0): 0 picks a free port.
        header_timeout_s (`float`, *optional*): seconds a connection may take to send a request head; defaults to
            the app's `ServeSettings.header_timeout_s` (or 10 s for other apps).
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, header_timeout_s: float | None = None):
        self.app, self.host = app, host
        # Bind first and hand the socket to uvicorn: the port is known and cannot be taken in between.
        self.socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.port = self.socket.getsockname()[1]
        if header_timeout_s is None:
            settings = getattr(getattr(app, "state", None), "settings", None)
            header_timeout_s = getattr(settings, "header_timeout_s", DEFAULT_HEADER_TIMEOUT_S)
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="auto",
            timeout_keep_alive=5,
            http=protocol_with_header_timeout(header_timeout_s),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, name="openmind-uvicorn", daemon=True
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start; see the log above.")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.socket.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["BackgroundServer"]
