"""Training photos by URL (`tune[image_urls][]`), only where the operator allows it
(`WORKER_FETCH_URLS`, off by default).

A server that fetches URLs for its clients can be turned against the network it sits in
(server-side request forgery: the cloud metadata service at 169.254.169.254, an admin page on
localhost, a database on 10.x.x.x). So a URL is fetched only when:
- its scheme is http or https;
- its host name resolves, here, to public addresses only: every address it resolves to must be
  global (not loopback, private, link-local, shared, multicast, reserved or unspecified; an
  IPv4-mapped IPv6 address is judged as the IPv4 one). The request then goes to an address that
  was checked, with the name kept for the Host header and for TLS (SNI and the certificate
  check), so a second DNS answer cannot send it elsewhere (DNS rebinding);
- every redirect (at most 3) passes the same checks before it is followed;
- the body stays under the size cap while it streams in, and the whole fetch under a timeout.
No proxy from the environment is used (it would reach what the checks refuse). A refusal is a
RequestError (422) naming the URL without its query (which may hold a signature).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urljoin

import httpx

from backends.local.errors import RequestError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_REDIRECTS = 3
TIMEOUT_S = 20.0


def is_public(address: IPAddress) -> bool:
    """Whether a client may make the worker connect to `address`."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast and not address.is_reserved


class UrlFetcher:
    """Fetches one URL at a time under the rules above. `allow` decides which addresses may be
    reached (tests pass one that also allows loopback, to fetch from a local server)."""

    def __init__(
        self,
        max_bytes: int,
        *,
        timeout_s: float = TIMEOUT_S,
        allow: Callable[[IPAddress], bool] = is_public,
    ) -> None:
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.allow = allow

    async def fetch(self, url: str) -> bytes:
        shown = _shown(url)
        try:
            async with (
                asyncio.timeout(self.timeout_s),
                httpx.AsyncClient(timeout=self.timeout_s, trust_env=False) as http,
            ):
                for _ in range(MAX_REDIRECTS + 1):
                    body, location = await self._get(http, url, shown)
                    if location is None:
                        return body
                    url = urljoin(url, location)
                    shown = _shown(url)
        except TimeoutError:
            raise RequestError(f"{shown}: no answer within {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise RequestError(f"{shown}: cannot be fetched ({type(exc).__name__})") from None
        raise RequestError(f"{shown}: more than {MAX_REDIRECTS} redirects")

    async def _get(self, http: httpx.AsyncClient, url: str, shown: str) -> tuple[bytes, str | None]:
        """One hop: the body, or the redirect's Location."""
        target = httpx.URL(url)
        if target.scheme not in ("http", "https") or not target.host:
            raise RequestError(f"{shown}: only http and https URLs are fetched")
        address = await self._checked_address(target, shown)
        pinned = target.copy_with(host=str(address))
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        headers = {"Host": target.netloc.decode("ascii")}
        async with http.stream("GET", pinned, headers=headers, extensions=extensions) as response:
            if response.is_redirect:
                return b"", response.headers.get("location", "")
            if not response.is_success:
                raise RequestError(f"{shown}: HTTP {response.status_code}")
            if int(response.headers.get("content-length") or 0) > self.max_bytes:
                raise RequestError(f"{shown}: larger than {self.max_bytes} bytes")
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise RequestError(f"{shown}: larger than {self.max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks), None

    async def _checked_address(self, target: httpx.URL, shown: str) -> IPAddress:
        """The first address of the host, after checking all of them."""
        port = target.port or (443 if target.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                target.host, port, type=socket.SOCK_STREAM
            )
        except OSError:
            raise RequestError(f"{shown}: the host name does not resolve") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        refused = [a for a in addresses if not self.allow(a)]
        if not addresses or refused:
            what = refused[0] if refused else "no address"
            raise RequestError(
                f"{shown}: {target.host} is not a public address ({what});"
                " only public http(s) URLs are fetched"
            )
        return addresses[0]


def _shown(url: str) -> str:
    try:
        return str(httpx.URL(url).copy_with(query=None, fragment=None))
    except Exception:
        return "an invalid URL"
