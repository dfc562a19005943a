"""The Bot API transport: python-telegram-bot's requests sent with aiohttp.

PTB sends through httpx by default. Under load (`bench/telegram_load.py`) about two thirds
of the bot's CPU went into httpx and httpcore. A fifth went into one step alone: before each
request, the pool checks every idle connection with a getpeername and a poll. aiohttp (which
discord.py brings anyway) sends the same requests for a fraction of that. `BaseRequest` is
PTB's documented place for another transport; everything above it (retries, the rate limiter,
parsing) stays PTB's own.

httpx checks every idle connection before it reuses one; aiohttp does not, and reuses a
keep-alive connection the server has just closed as idle: the request cannot be written and
fails. Such a request never reached the server, so it is sent once more on a new connection
(`_never_arrived`); one that went out whole and got no answer is not (it may have been acted on).

The bot token is part of every URL (`/bot<token>/...`), and aiohttp quotes URLs in its error
messages: errors are re-raised as PTB's with the token cut out and the original not chained.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

_TOKEN_IN_URL = re.compile(r"/bot[^/\s]+")
_URL_ENCODED = {"Content-Type": "application/x-www-form-urlencoded"}
RESENDS = 1
"""How often a request the server never got whole is sent again (`_never_arrived`)."""
Timeout = float | DefaultValue[None] | None
"""A phase's timeout in seconds; None waits forever, a DefaultValue means "as configured"."""


class AiohttpRequest(BaseRequest):
    """One pool of keep-alive connections to the Bot API.

    Timeouts: `connect` covers the wait for a pooled connection plus opening one, `read` each
    wait for the answer once the request is sent. aiohttp has no write timeout, so PTB's
    `write_timeout` is not used: an upload is as slow as the network lets it be, never cut
    off half-way (a cut-off album would be sent again, and then arrive twice).
    Proxies: HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment, as PTB's own transport
    honours them (SOCKS proxies are not supported). Redirects are not followed, as there.
    """

    def __init__(
        self,
        connection_pool_size: int,
        *,
        read_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
    ) -> None:
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str | None] = {}  # host -> proxy URL, looked up once

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                headers={"User-Agent": self.USER_AGENT},
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
        read = _given(read_timeout, self._read_timeout)
        connect = _given(connect_timeout, self._connect_timeout)
        pool = _given(pool_timeout, self._pool_timeout)
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            sock_read=read,
        )
        resent = 0
        while True:
            data, headers = _body(request_data)  # a multipart form is sent once: one per try
            try:
                async with self._session.request(
                    method,
                    url,
                    data=data,
                    headers=headers,
                    timeout=timeout,
                    proxy=self._proxy_for(url),
                    allow_redirects=False,
                ) as response:
                    return response.status, await response.read()
            except TimeoutError as exc:  # aiohttp's message names the URL: not chained
                raise TimedOut(f"Timed out: {_without_token(exc)}") from None
            except aiohttp.ClientError as exc:
                if resent < RESENDS and _never_arrived(exc):
                    resent += 1
                    continue
                raise NetworkError(f"aiohttp.{type(exc).__name__}: {_without_token(exc)}") from None

    def _proxy_for(self, url: str) -> str | None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host not in self._proxies:
            proxy = getproxies().get(parts.scheme)
            self._proxies[host] = None if proxy is None or proxy_bypass(host) else proxy
        return self._proxies[host]


def _never_arrived(exc: aiohttp.ClientError) -> bool:
    """The request could not be written whole: the server closed the connection first. It
    happens to a pooled keep-alive connection the server closes as idle just as a request
    takes it (uvicorn after 5 s; Telegram's servers too), and the server has then acted on
    nothing, so sending it again on a new connection cannot make it happen twice. A failure
    after the request went out (no answer, a hang-up) may have been acted on: not resent."""
    if isinstance(exc, aiohttp.ClientConnectionResetError):  # writing to a closing transport
        return True
    return isinstance(exc, aiohttp.ClientOSError) and str(exc.strerror).startswith(
        "Can not write request body"
    )


def _without_token(exc: BaseException) -> str:
    return _TOKEN_IN_URL.sub("/bot<token>", str(exc)) or type(exc).__name__


def _given(value: Timeout, default: float | None) -> float | None:
    return default if isinstance(value, DefaultValue) else value


def _body(
    request_data: RequestData | None,
) -> tuple[aiohttp.FormData | bytes | None, dict[str, str] | None]:
    """A form and its headers: url-encoded without files, multipart with them (as the Bot API
    takes both). The url-encoded body is made here: handed a dict, aiohttp builds a FormData
    with a multipart writer for every request, about 6 % of the bot's time on the interpreter
    lock at 300 updates/s (bench/telegram_load.py)."""
    if request_data is None:
        return None, None
    if not request_data.contains_files:
        return request_data.url_encoded_parameters().encode(), _URL_ENCODED
    form = aiohttp.FormData()
    for name, value in request_data.json_parameters.items():
        form.add_field(name, value)
    for name, (filename, content, mime) in request_data.multipart_data.items():
        form.add_field(name, content, filename=filename, content_type=mime)
    return form, None
