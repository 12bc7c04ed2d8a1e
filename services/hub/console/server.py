"""The console served from a thread of its own: for the browser tests and the page bench."""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:
    from fastapi import FastAPI

START_TIMEOUT_S = 30.0


class BackgroundServer:
    """Serves an app on 127.0.0.1 at a free port, on its own thread and event loop."""

    def __init__(self, app: FastAPI) -> None:
        # Bound here, so the port is known before the server starts and nobody else takes it.
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and
        # without it a kept-alive response waits 40 ms for a delayed ACK (Nagle).
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        """Where the console answers."""
        return f"http://127.0.0.1:{self.port}"

    def start_blocking(self) -> None:
        """Start the thread and wait until the app's start-up has finished."""
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the console did not start")
            time.sleep(0.05)

    def stop_blocking(self) -> None:
        """Ask the server to finish its requests and shut down, and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=START_TIMEOUT_S)
        self._socket.close()
