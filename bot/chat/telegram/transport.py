"""The Bot API transport: python-telegram-bot's requests sent with aiohttp.

PTB sends through httpx by default. Under load (`bench/telegram_load.py`) about two thirds
of the bot's CPU went into httpx and httpcore. A fifth went into one step alone: before each
request, the pool checks every idle connection with a getpeername and a poll. aiohttp (which
discord.py brings anyway) sends the same requests for a fraction of that. `BaseRequest` is
PTB's documented place for another transport; everything above it (retries, the rate limiter,
parsing) stays PTB's own.
"""

from __future__ import annotations

import re

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

_TOKEN_IN_URL = re.compile(r"/bot[^/\s]+")
Timeout = float | DefaultValue[None] | None
"""A phase's timeout in seconds; None waits forever, a DefaultValue means "as configured"."""


class AiohttpRequest(BaseRequest):
    """One pool of keep-alive connections to the Bot API; timeouts as PTB's own transport.

    aiohttp has no write timeout: a request may take the sum of its phases' timeouts.
    """

    def __init__(
        self,
        connection_pool_size: int,
        *,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
    ) -> None:
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                headers={"User-Agent": self.USER_AGENT},
                trust_env=True,  # HTTPS_PROXY and friends, as with PTB's httpx transport
            )

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Timeout = BaseRequest.DEFAULT_NONE,
        write_timeout: Timeout = BaseRequest.DEFAULT_NONE,
        connect_timeout: Timeout = BaseRequest.DEFAULT_NONE,
        pool_timeout: Timeout = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("AiohttpRequest is not initialized")
        uploads = request_data is not None and request_data.contains_files
        timeout = self._timeout(
            _given(read_timeout, self._read_timeout),
            _given(write_timeout, self._media_write_timeout if uploads else self._write_timeout),
            _given(connect_timeout, self._connect_timeout),
            _given(pool_timeout, self._pool_timeout),
        )
        try:
            async with self._session.request(
                method, url, data=_body(request_data), timeout=timeout
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            # aiohttp's message can hold the URL, and with it the bot token: not chained
            message = _TOKEN_IN_URL.sub("/bot<token>", str(exc))
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {message}") from None

    @staticmethod
    def _timeout(
        read: float | None, write: float | None, connect: float | None, pool: float | None
    ) -> aiohttp.ClientTimeout:
        """aiohttp counts the wait for a pooled connection into `connect`."""
        phases = (read, write, connect, pool)
        return aiohttp.ClientTimeout(
            total=None if None in phases else sum(p for p in phases if p is not None),
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            sock_read=read,
        )


def _given(value: Timeout, default: float | None) -> float | None:
    return default if isinstance(value, DefaultValue) else value


def _body(request_data: RequestData | None) -> aiohttp.FormData | dict[str, str] | None:
    """A form: url-encoded without files, multipart with them (as the Bot API takes both)."""
    if request_data is None:
        return None
    if not request_data.contains_files:
        return request_data.json_parameters
    form = aiohttp.FormData()
    for name, value in request_data.json_parameters.items():
        form.add_field(name, value)
    for name, (filename, content, mime) in request_data.multipart_data.items():
        form.add_field(name, content, filename=filename, content_type=mime)
    return form
