"""Fetching training photos by URL without opening the worker's network (`fetch_urls.py`).

A local test server is itself on loopback, which the worker must never fetch from. So the
refusals are tested with the real policy (`is_public`), and the fetching itself (size cap,
redirects re-checked, timeout, errors) with a fetcher whose policy admits loopback only: the
policy is the fetcher's one injected parameter, the rest of the code path is the same.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from backends.local.errors import RequestError
from backends.local.fetch_urls import UrlFetcher, is_public
from tests.worker_fixtures import run_uvicorn

PHOTO = b"\x89PNG fake photo bytes"
CAP = 1000


async def photo(request: Request) -> Response:
    return Response(PHOTO, media_type="image/png")


async def endless(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 100

    return StreamingResponse(chunks())  # no Content-Length: the cap must hold while streaming


async def slow(request: Request) -> Response:
    await asyncio.sleep(5)
    return Response(PHOTO)


def redirect(to: str):
    async def handler(request: Request) -> Response:
        return RedirectResponse(to, status_code=302)

    return handler


APP = Starlette(
    routes=[
        Route("/photo.png", photo),
        Route("/endless", endless),
        Route("/slow", slow),
        Route("/hop", redirect("/photo.png")),
        Route("/to-private", redirect("http://10.1.2.3/photo.png")),
        Route("/loop", redirect("/loop")),
        Route("/big", lambda r: Response(b"x" * (CAP + 1))),
    ]
)


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async with run_uvicorn(APP) as url:
        yield url


def loopback_only(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_loopback


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("10.0.0.5", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("fe80::1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("fd00::1", False),
    ],
)
def test_only_public_addresses_may_be_fetched(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/a.jpg", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http://127.0.0.1:9/a.jpg?token=secret", "not a public address (127.0.0.1)"),
        ("http://localhost:9/a.jpg", "not a public address"),
        ("http://[::1]:9/a.jpg", "not a public address (::1)"),
        ("http://169.254.169.254/latest/meta-data/", "not a public address"),
        ("http://10.0.0.5/a.jpg", "not a public address"),
    ],
)
async def test_the_real_policy_refuses_before_connecting(url: str, message: str) -> None:
    with pytest.raises(RequestError, match=re.escape(message)) as caught:
        await UrlFetcher(CAP).fetch(url)
    assert "secret" not in str(caught.value)


async def test_a_local_server_is_refused_by_default_and_fetched_when_allowed(server: str) -> None:
    with pytest.raises(RequestError, match="not a public address"):
        await UrlFetcher(CAP).fetch(f"{server}/photo.png")
    assert await UrlFetcher(CAP, allow=loopback_only).fetch(f"{server}/photo.png") == PHOTO


async def test_redirects_are_followed_and_checked_at_every_hop(server: str) -> None:
    fetcher = UrlFetcher(CAP, allow=loopback_only)
    assert await fetcher.fetch(f"{server}/hop") == PHOTO
    with pytest.raises(RequestError, match=r"10\.1\.2\.3/photo.png: .*not a public address"):
        await fetcher.fetch(f"{server}/to-private")
    with pytest.raises(RequestError, match="more than 3 redirects"):
        await fetcher.fetch(f"{server}/loop")


async def test_size_cap_timeout_and_http_errors(server: str) -> None:
    fetcher = UrlFetcher(CAP, allow=loopback_only, timeout_s=1.0)
    for path in ("/big", "/endless"):
        with pytest.raises(RequestError, match=f"larger than {CAP} bytes"):
            await fetcher.fetch(f"{server}{path}")
    with pytest.raises(RequestError, match="no answer within 1 s"):
        await fetcher.fetch(f"{server}/slow")
    with pytest.raises(RequestError, match="HTTP 404"):
        await fetcher.fetch(f"{server}/missing")
