"""The aiohttp transport under PTB's Bot: real requests to the fake Bot API, and the failures a
remote end can cause (a dropped connection, no answer) mapped to PTB's errors without the
token."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from telegram import Bot
from telegram.error import NetworkError, TimedOut

from bot.chat.telegram.transport import AiohttpRequest
from tests.fakes.telegram_api import TOKEN, FakeTelegram

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def bot_on(api_url: str, request: AiohttpRequest) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=api_url, request=request, get_updates_request=request) as bot:
        yield bot


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


@pytest.mark.parametrize("answer", [b"", b"NOT HTTP AT ALL\r\n\r\n"], ids=["hang-up", "junk"])
async def test_a_broken_answer_is_a_network_error_without_the_token(answer: bytes) -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with raw_server(reply) as url:
        request = AiohttpRequest(1)
        await request.initialize()
        try:
            with pytest.raises(NetworkError) as caught:
                await request.post(f"{url}{TOKEN}/getMe")
        finally:
            await request.shutdown()
    error = caught.value
    assert not isinstance(error, TimedOut) and error.message.startswith("aiohttp.")
    assert TOKEN.split(":")[1] not in error.message
    assert error.__cause__ is None and error.__suppress_context__  # tracebacks don't show it


async def test_no_answer_within_the_read_timeout_is_timed_out() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    async with raw_server(never_answer) as url:
        request = AiohttpRequest(1, read_timeout=0.2)
        await request.initialize()
        try:
            with pytest.raises(TimedOut):
                await request.post(f"{url}{TOKEN}/getMe")
            with pytest.raises(TimedOut):  # a per-call timeout wins over the default
                await request.post(f"{url}{TOKEN}/getMe", read_timeout=0.1)
        finally:
            await request.shutdown()


async def test_refuses_to_send_before_initialize() -> None:
    with pytest.raises(RuntimeError, match="not initialized"):
        await AiohttpRequest(1).do_request("http://127.0.0.1:9/bot/getMe", "POST")
