"""How both HTTP servers (the worker's API, the bot's callback server) defend their sockets.

uvicorn closes idle keep-alive connections but has no timeout for a request whose headers never
finish: 1100 half-sent requests held every file descriptor of a worker. `TimedH11Protocol`
closes a connection that has not sent complete headers within `header_timeout_s`; a body that
stalls is ended by http.BodyLimit's idle timeout. With `limit_concurrency` a flood gets 503s
instead of exhausting descriptors, and the soft open-files limit is raised to the hard one at
start (systemd's units set `LimitNOFILE` as well, docs/configuration.md).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0
"""A client has this long from connecting to finishing its request headers."""
KEEP_ALIVE_S = 5
LIMIT_CONCURRENCY = 2000
"""Open connections (and requests in flight) before new requests get 503: below LimitNOFILE."""
MAX_HEADER_BYTES = 16 * 1024
"""h11's cap on an incomplete request head (its default is 16 KiB too; set, not assumed)."""


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for the first request's headers."""

    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline = asyncio.get_running_loop().call_later(
            self.header_timeout_s, self._headers_too_slow
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._header_deadline.cancel()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        if self.cycle is None and not self.transport.is_closing():
            self.transport.close()


def server_options(header_timeout_s: float = HEADER_TIMEOUT_S) -> dict[str, Any]:
    """keyword arguments for `uvicorn.Config`/`uvicorn.run`: the limits above."""
    protocol = type("TimedH11", (TimedH11Protocol,), {"header_timeout_s": header_timeout_s})
    return {
        "http": protocol,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "limit_concurrency": LIMIT_CONCURRENCY,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }


def raise_open_files_limit() -> int:
    """Lift the soft limit of open files to the hard one (1024 -> often 524288); the result."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open files limit from %d: %s", soft, exc)
    return soft
