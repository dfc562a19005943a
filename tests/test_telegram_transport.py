"""The aiohttp transport under PTB's Bot: real requests to the fake Bot API, and the failures a
remote end can cause (a dropped connection, no answer) mapped to PTB's errors without the
token."""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile
from telegram.error import NetworkError, TimedOut
from telegram.request import RequestData
from telegram.request._requestparameter import RequestParameter

from bot.chat.telegram.transport import AiohttpRequest
from tests.fakes.telegram_api import TOKEN, FakeTelegram

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def bot_on(api_url: str, request: AiohttpRequest) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=api_url, request=request, get_updates_request=request) as bot:
        yield bot


def answering(answer: bytes, heads: list[bytes] | None = None) -> Handler:
    """A remote end that reads a request's head (kept in `heads`), writes `answer` and
    hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if heads is not None:
            heads.append(head.split(b"\r\n")[0])
        writer.write(answer)
        await writer.drain()
        writer.close()

    return handle


@contextlib.asynccontextmanager
async def started(request: AiohttpRequest) -> AsyncIterator[AiohttpRequest]:
    await request.initialize()
    try:
        yield request
    finally:
        await request.shutdown()


@contextlib.asynccontextmanager
async def raw_server(handle: Handler) -> AsyncIterator[str]:
    """A misbehaving Bot API: whatever `handle` does with each connection."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/bot"


async def test_sends_forms_and_uploads_through_the_bot_api() -> None:
    with FakeTelegram() as fake:
        async with bot_on(fake.api_url, AiohttpRequest(4)) as bot:
            assert bot.username == "photoshoot_test_bot"  # getMe, url-encoded
            sent = await bot.send_message(42, "hello", reply_markup=None)
            photo = await bot.send_photo(42, b"\xff\xd8 not really a jpeg", caption="c")
    message, upload = fake.find("sendMessage")[0], fake.find("sendPhoto")[0]
    assert (message.params["text"], sent.text) == ("hello", "hello")
    assert upload.files["photo"] == b"\xff\xd8 not really a jpeg"
    assert (upload.params["caption"], photo.caption) == ("c", "c")


async def test_forms_we_url_encode_ourselves_arrive_intact() -> None:
    text = "“Quotes”, & ampersands = signs + plus, ünïcödé and 🔁 emoji\non two lines"
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("✨ #1", callback_data="a:x&y=z")]])
    with FakeTelegram() as fake:
        async with bot_on(fake.api_url, AiohttpRequest(4)) as bot:
            await bot.send_message(-1001234, text, reply_markup=keyboard)
    [call] = fake.find("sendMessage")
    assert call.params["text"] == text and call.chat_id == -1001234
    button = call.params["reply_markup"]["inline_keyboard"][0][0]
    assert button == {"text": "✨ #1", "callback_data": "a:x&y=z"}


@pytest.mark.parametrize("answer", [b"", b"NOT HTTP AT ALL\r\n\r\n"], ids=["hang-up", "junk"])
async def test_a_broken_answer_is_a_network_error_without_the_token(answer: bytes) -> None:
    async with raw_server(answering(answer)) as url, started(AiohttpRequest(1)) as request:
        with pytest.raises(NetworkError) as caught:
            await request.post(f"{url}{TOKEN}/getMe")
    error = caught.value
    assert not isinstance(error, TimedOut) and error.message.startswith("aiohttp.")
    assert TOKEN.split(":")[1] not in error.message
    assert error.__cause__ is None and error.__suppress_context__  # tracebacks don't show it


async def answer_late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads the request, then hangs up without an answer a while later."""
    await reader.readline()
    await asyncio.sleep(1.5)
    writer.close()


async def test_no_answer_within_the_read_timeout_is_timed_out() -> None:
    """Timed out, not a hang-up (which comes later): the default and a per-call timeout."""
    async with (
        raw_server(answer_late) as url,
        started(AiohttpRequest(2, read_timeout=0.2)) as with_default,
        started(AiohttpRequest(2, read_timeout=None)) as without,
    ):
        with pytest.raises(TimedOut):
            await with_default.post(f"{url}{TOKEN}/getMe")
        with pytest.raises(TimedOut):  # a per-call timeout wins over the default
            await without.post(f"{url}{TOKEN}/getMe", read_timeout=0.1)


async def test_no_free_connection_in_time_is_timed_out_without_the_token() -> None:
    """The only pooled connection is busy: aiohttp's message then names the URL."""
    async with (
        raw_server(answer_late) as url,
        started(AiohttpRequest(1, read_timeout=None)) as request,
    ):
        busy = asyncio.create_task(request.post(f"{url}{TOKEN}/getUpdates"))
        await asyncio.sleep(0.1)
        try:
            with pytest.raises(TimedOut) as caught:
                await request.post(f"{url}{TOKEN}/getMe", pool_timeout=0.1, connect_timeout=0.1)
        finally:
            busy.cancel()
    shown = "".join(traceback.format_exception(caught.value))
    assert "Timed out" in shown and TOKEN.split(":")[1] not in shown


async def test_redirects_are_not_followed() -> None:
    redirect = (
        b"HTTP/1.1 302 Found\r\nLocation: http://example.invalid/\r\nContent-Length: 0\r\n\r\n"
    )
    async with raw_server(answering(redirect)) as url, started(AiohttpRequest(1)) as request:
        status, _ = await request.do_request(f"{url}{TOKEN}/getMe", "POST")
    assert status == 302


async def test_an_https_proxy_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """As with PTB's own transport: the proxy gets the request in absolute form."""
    heads: list[bytes] = []
    proxy = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", heads)
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    async with raw_server(proxy) as proxy_url:
        monkeypatch.setenv("http_proxy", proxy_url.removesuffix("/bot"))
        async with started(AiohttpRequest(1)) as request:
            status, body = await request.do_request(f"http://api.invalid/bot{TOKEN}/getMe", "POST")
    assert (status, body) == (200, b"{}")
    assert heads == [f"POST http://api.invalid/bot{TOKEN}/getMe HTTP/1.1".encode()]


async def test_refuses_to_send_before_initialize() -> None:
    with pytest.raises(RuntimeError, match="not initialized"):
        await AiohttpRequest(1).do_request("http://127.0.0.1:9/bot/getMe", "POST")


def form(**fields: object) -> RequestData:
    """A request's parameters as PTB's Bot hands them to its transport."""
    return RequestData([RequestParameter.from_input(k, v) for k, v in fields.items()])


class ClosesAfterEachAnswer:
    """A Bot API that answers with keep-alive, then closes the connection: as any server
    closing an idle keep-alive connection, here just as the client takes it for its next
    request. `received` holds the requests read whole: what the server could have acted on."""

    def __init__(self) -> None:
        self.connections = 0
        self.received: list[bytes] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length")
        )
        self.received.append(head.split(b" ")[1] + b" " + await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")  # keep-alive
        await writer.drain()
        writer.close()


async def test_a_request_on_a_connection_the_server_had_closed_is_sent_again_once() -> None:
    """aiohttp reuses the closed connection and cannot write the request (the reset the
    load benchmark met once under uvicorn's keep-alive timeout): the request goes again, on
    a new connection, and reaches the server once."""
    server = ClosesAfterEachAnswer()
    async with raw_server(server) as url, started(AiohttpRequest(1)) as request:
        first = await request.do_request(f"{url}{TOKEN}/getMe", "POST", form(a=1))
        second = await request.do_request(
            f"{url}{TOKEN}/sendMessage", "POST", form(chat_id=42, text="once")
        )
        upload = await request.do_request(  # a multipart form, built again for its resend
            f"{url}{TOKEN}/sendDocument", "POST", form(chat_id=42, document=InputFile(b"%PNG.."))
        )
    assert first == second == upload == (200, b"{}")
    assert server.connections == 3
    assert server.received[:2] == [
        f"/bot{TOKEN}/getMe a=1".encode(),
        f"/bot{TOKEN}/sendMessage chat_id=42&text=once".encode(),
    ]
    assert len(server.received) == 3 and b"%PNG.." in server.received[2]


async def test_a_request_sent_whole_is_not_sent_again_when_the_answer_fails() -> None:
    """The hang-up came after the request: the server may have acted on it."""
    heads: list[bytes] = []
    async with raw_server(answering(b"", heads)) as url, started(AiohttpRequest(1)) as request:
        with pytest.raises(NetworkError):
            await request.post(f"{url}{TOKEN}/sendMessage", form(chat_id=1, text="once"))
    assert len(heads) == 1
