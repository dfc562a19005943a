"""Slow clients: many half-sent requests neither lock out `/healthz` nor stay open forever.

1100 half-sent requests once made a worker unreachable (issue 13, item 5). Here a bounded number
of loopback connections send half a request head and stall, against the worker's app and the
bot's callback server, both under uvicorn with the production limits (a shorter header timeout,
so the test need not wait 10 s).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from backends.local import Worker
from backends.local.http import BODY_IDLE_TIMEOUT_S
from backends.server_limits import server_options
from bot.web import WebServer
from tests.fakes.threaded_server import free_port
from tests.worker_fixtures import run_uvicorn, worker_config

HALF_OPEN = 300
"""Well below the 1024 open files of a default soft limit, so the test runs anywhere."""


async def stall(url: str, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """`count` connections, each sending an unfinished request head."""
    host, port = url.removeprefix("http://").split(":")
    conns = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /tunes HTTP/1.1\r\nHost: x\r\nContent-Type: application/js")
        await writer.drain()
        conns.append((reader, writer))
    return conns


async def healthz_and_cleanup(url: str) -> None:
    conns = await stall(url, HALF_OPEN)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(3):
                assert (await client.get(f"{url}/healthz")).status_code == 200
        # The header deadline closes every stalled connection: each read ends in EOF.
        reads = asyncio.gather(*(r.read() for r, _ in conns))
        closed = await asyncio.wait_for(reads, 60)
        assert closed == [b""] * HALF_OPEN
    finally:
        for _, writer in conns:
            writer.close()


@pytest.mark.slow
async def test_half_open_connections_do_not_stop_the_worker(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    worker = Worker(worker_config(tmp_path / "w"))
    async with run_uvicorn(worker.app, **server_options(header_timeout_s=1.0)) as url:
        await healthz_and_cleanup(url)


@pytest.mark.slow
async def test_half_open_connections_do_not_stop_the_callback_server() -> None:
    port = free_port()
    server = WebServer(host="127.0.0.1", port=port, header_timeout_s=1.0)
    await server.start()
    try:
        await healthz_and_cleanup(f"http://127.0.0.1:{port}")
    finally:
        await server.stop()


@pytest.mark.slow
async def test_a_stalled_body_is_answered_408_and_commits_nothing(tmp_path: Path) -> None:
    """Headers complete, the body stops after a few bytes: after BODY_IDLE_TIMEOUT_S the worker
    answers 408 instead of holding the connection (and its upload) forever."""
    pytest.importorskip("torch")
    worker = Worker(worker_config(tmp_path / "w"))
    async with run_uvicorn(worker.app, **server_options()) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(
                b"POST /tunes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"tune": {'
            )
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), BODY_IDLE_TIMEOUT_S + 30)
        finally:
            writer.close()
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.split()[1] == b"408", answer
        assert b"the request body stalled" in rest
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/tunes")).json() == []
