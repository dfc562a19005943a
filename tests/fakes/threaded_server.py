"""Serving a fake on a background thread: uvicorn with its own event loop.

The fakes stand in for remote services, so they must never share the event loop of the code
under test: sync tests, async tests and bot subprocesses all reach them over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import uvicorn

START_WITHIN_S = 10.0


def listening_socket(host: str, port: int = 0) -> socket.socket:
    """A bound TCP socket whose accepted connections get TCP_NODELAY.

    asyncio turns Nagle off only on sockets created with proto=IPPROTO_TCP; a plain
    `socket.socket()` has proto 0, and then every keep-alive answer (headers and body written
    separately) waits ~40 ms for the client's delayed ACK.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now, for a server a test starts itself."""
    with listening_socket(host) as sock:
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


class ThreadedServer:
    """`start()` serves `app` until `stop()`; `around` runs inside the server's loop, around
    the serving (a fake's loop-bound state: events, clients, clock tasks)."""

    def __init__(
        self,
        app: Any,
        name: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        graceful_shutdown_s: int = 0,
        around: Callable[[], AbstractAsyncContextManager[object]] = _nothing,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self._config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=graceful_shutdown_s,
            access_log=False,
        )
        self._around = around
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Bind (a port of 0 picks a free one, kept for a restart) and wait until serving."""
        sock = listening_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._error = None
        server = self._server = uvicorn.Server(self._config)
        self._thread = threading.Thread(
            target=self._run, args=(server, sock), name=f"{self.name}:{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_WITHIN_S
        while not server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"{self.name} failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start within {START_WITHIN_S:.0f} s")
            time.sleep(0.005)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        async def main() -> None:
            async with self._around():
                await server.serve(sockets=[sock])

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
        finally:
            sock.close()
