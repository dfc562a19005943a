"""The worker's HTTP plumbing: what every endpoint shares, kept out of the routes in app.py.

- Bodies: JSON (`{"prompt": {...}}`, the root key optional) or forms/multipart with Rails-style
  keys (`prompt[text]`, `tune[images][]`), read into one `Body`, within the size limits.
- Images: an upload is read and checked to really be a photo big enough to train on.
- Paging: Astria's `limit`, `offset` and `before_id` query parameters.
- Middlewares: the `.json` suffix of Astria's URLs, the bearer-key check (or loopback clients
  only, with no key configured: a worker on 0.0.0.0 without a key must not be an open GPU for
  the network), and the last resort for a bug: a logged stack trace and a JSON 500.
- Exception handlers: an `HTTPError` (422 for a `RequestError`) and Starlette's own 404/405
  become Astria's `{"error": "..."}` with the status.
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, ExceptionHandler, Message, Receive, Scope, Send

from backends.local.errors import HTTPError, RequestError
from backends.local.params import MIN_PHOTO_SIDE, too_small_message
from backends.local.records import JobKind

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 30 * 1024 * 1024
MAX_TRAINING_IMAGES = 50
DEFAULT_LIMIT = 20
MAX_LIMIT = 120
OPEN_PATHS = frozenset({"/healthz"})
"""Served without a key (probes); they show no secret and start no work."""
FORM_KEY = re.compile(r"^(?P<root>[a-z_]+)\[(?P<name>[a-z_]+)\](?P<list>\[\])?$")
"""`tune[name]`, `tune[images][]`: Rails-style form keys, as Astria's own clients send them."""


@dataclass
class Body:
    """A request body without its root key: plain fields, and file parts by field name."""

    fields: dict[str, Any] = field(default_factory=dict)
    files: dict[str, list[UploadFile]] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    """Which slice of a listing, newest first."""

    limit: int
    offset: int
    before_id: int | None


async def read_body(request: Request, root: JobKind) -> Body:
    """Fields and file parts of a JSON, urlencoded or multipart body, without the `root` key."""
    if request.headers.get("content-type", "").startswith("application/json"):
        return Body(fields=await _json_fields(request, root))
    try:
        form = await request.form(max_files=MAX_TRAINING_IMAGES + 1, max_part_size=MAX_IMAGE_BYTES)
    except Exception as exc:  # malformed multipart
        raise RequestError(f"cannot read the form: {exc}") from None
    body = Body()
    for key, value in form.multi_items():
        match = FORM_KEY.match(key)
        if not match or match["root"] != root:
            continue
        name = match["name"]
        if isinstance(value, UploadFile):
            body.files.setdefault(name, []).append(value)
        elif match["list"]:
            body.fields.setdefault(name, []).append(value)
        else:
            body.fields[name] = value
    return body


async def _json_fields(request: Request, root: JobKind) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise RequestError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RequestError(f"the body must be a JSON object with {root.value!r}")
    inner = body.get(root, body)
    if not isinstance(inner, dict):
        raise RequestError(f"{root.value!r} must be an object")
    return inner


async def read_training_images(uploads: list[UploadFile]) -> list[tuple[bytes, str]]:
    """Each upload's bytes and file extension, after checking it is a photo to train on."""
    if len(uploads) > MAX_TRAINING_IMAGES:
        raise RequestError(f"at most {MAX_TRAINING_IMAGES} images per tune")
    return [await _read_image(upload) for upload in uploads]


async def _read_image(upload: UploadFile) -> tuple[bytes, str]:
    content = await upload.read()
    if len(content) > MAX_IMAGE_BYTES:
        raise RequestError(f"{upload.filename}: larger than {MAX_IMAGE_BYTES} bytes")
    try:
        with Image.open(io.BytesIO(content)) as image:
            kind = (image.format or "").lower()
            size = image.size
            image.verify()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        raise RequestError(f"{upload.filename}: not a readable image") from None
    if min(size) < MIN_PHOTO_SIDE:  # SDXL trains at 1024: an upscaled photo teaches blur
        raise RequestError(too_small_message(upload.filename or "a photo", *size))
    return content, {"jpeg": "jpg"}.get(kind, kind or "img")


def read_page(request: Request) -> Page:
    """The listing slice a request asks for (400 when it is not made of integers)."""
    try:
        limit = int(request.query_params.get("limit", DEFAULT_LIMIT))
        offset = int(request.query_params.get("offset", 0))
        before = request.query_params.get("before_id")
        before_id = int(before) if before else None
    except ValueError:
        raise HTTPError(400, "limit, offset and before_id must be integers") from None
    if offset < 0 or limit < 1:
        raise HTTPError(400, "limit must be positive and offset not negative")
    return Page(min(limit, MAX_LIMIT), offset, before_id)


# -- middlewares ----------------------------------------------------------------------------


def middlewares(api_key: str | None) -> list[Middleware]:
    """Outermost first: the last resort for bugs, the `.json` suffix, then the key check."""
    return [Middleware(ServerErrors), Middleware(JsonSuffix), Middleware(BearerAuth, api_key)]


class JsonSuffix:
    """`/tunes/1.json` == `/tunes/1` (Astria's URLs end in .json); files keep their names."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.endswith(".json") and not path.startswith("/files/"):
            scope = {**scope, "path": path[: -len(".json")]}
        await self.app(scope, receive, send)


class BearerAuth:
    """Bearer key check, or loopback-only when no key is configured; OPEN_PATHS are open."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        open_path = scope.get("path") in OPEN_PATHS
        if scope["type"] == "http" and not open_path and not self._allowed(scope):
            response = JSONResponse({"error": "Unauthorized"}, status_code=401)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        if self.api_key is None:
            client = scope.get("client")
            try:
                return client is not None and ipaddress.ip_address(client[0]).is_loopback
            except ValueError:
                return False
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = auth.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        )


class ServerErrors:
    """Any exception the handlers did not expect: a bug. Logged once with its stack trace and
    answered 500 `{"error": ...}`, like every other error of the API.

    Not Starlette's `Exception` handler: that one re-raises after answering, so uvicorn logs the
    trace a second time and httpx's ASGI transport raises it inside a bot running the worker
    in-process, where a remote worker's client would have got a 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            log.exception("%s %s failed", scope["method"], scope["path"])
            if started:  # half an answer is out: only the server can end it
                raise
            response = JSONResponse({"error": "Internal server error"}, status_code=500)
            await response(scope, receive, send)


# -- exception handlers ---------------------------------------------------------------------


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "Not found"}, status_code=404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "Method not allowed"}, status_code=405)


EXCEPTION_HANDLERS: dict[Any, ExceptionHandler] = {
    HTTPError: _http_error,
    404: _not_found,
    405: _not_allowed,
}
"""Astria's error shape for our HTTPError (RequestError: 422) and Starlette's unknown routes."""
