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

import asyncio
import errno
import hmac
import io
import ipaddress
import json
import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, ExceptionHandler, Message, Receive, Scope, Send

from backends.local.errors import HTTPError, RequestError
from backends.local.params import MIN_PHOTO_SIDE, too_small_message
from backends.local.records import JobKind
from backends.routing import MAX_ID  # importing it registers the `{name:id}` route convertor

if TYPE_CHECKING:
    from backends.local.config import WorkerConfig
    from backends.local.queue import JobRunner
    from backends.local.storage import FileStorage
    from backends.local.store import WorkerStore

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""One training photo; a phone's full-size JPEG is 3-12 MB."""
MAX_TRAINING_IMAGES = 50
MAX_REQUEST_BYTES = 256 * 1024 * 1024
"""A whole request body (a tune's photos together): refused with 413 beyond it, counted while
it streams in, so a client cannot make the worker hold more (uploads spool to disk above 1 MB,
and photos are checked one at a time)."""
MAX_JSON_BYTES = 1024 * 1024
"""A JSON body, and any non-file form field: prompts and tune fields are a few KB."""
BODY_IDLE_TIMEOUT_S = 30.0
"""A request body that sends nothing for this long is answered 408 (a stalled upload)."""
DISK_FULL = "the worker's disk is full; nothing was saved, try again later"
MAX_JSON_DEPTH = 32
"""Nesting of a JSON body: Astria's bodies are two levels deep; 1000 made json.loads recurse."""
DEFAULT_LIMIT = 20
MAX_LIMIT = 120
OPEN_PATHS = frozenset({"/healthz"})
"""Served without a key (probes); they show no secret and start no work."""
FORM_KEY = re.compile(r"^(?P<root>[a-z_]+)\[(?P<name>[a-z_]+)\](?P<list>\[\])?$")
"""`tune[name]`, `tune[images][]`: Rails-style form keys, as Astria's own clients send them."""


class Served(Protocol):
    """What the HTTP face needs of a worker (`worker.Worker`): its parts and its lifecycle."""

    config: WorkerConfig
    store: WorkerStore
    runner: JobRunner
    storage: FileStorage
    """Where files are: this machine's disk, or the fleet's S3 bucket."""
    started_at: str | None
    inspect: Callable[[Request], Awaitable[Response]]
    """POST /images/inspect (inspection.py, which loads cv2: the wiring builds it)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


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
        return Body(fields=await read_json_object(request, root))
    try:
        form = await request.form(
            max_files=MAX_TRAINING_IMAGES + 1,
            max_fields=MAX_TRAINING_IMAGES + 50,
            max_part_size=MAX_JSON_BYTES,
        )
    except HTTPError:  # over the request size limit (BodyLimit)
        raise
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


async def read_json_object(request: Request, root: str) -> dict[str, Any]:
    """The object under `root` of a JSON body (or the body itself), within the size and
    nesting caps (a body nested 1000 deep made json.loads recurse out of the stack)."""
    root = str(root)
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BYTES:
            raise HTTPError(413, f"a JSON body may hold at most {MAX_JSON_BYTES} bytes")
    if _nesting(raw) > MAX_JSON_DEPTH:
        raise RequestError(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        body = json.loads(raw)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError included
        raise RequestError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RequestError(f"the body must be a JSON object with {root!r}")
    inner = body.get(root, body)
    if not isinstance(inner, dict):
        raise RequestError(f"{root!r} must be an object")
    return inner


def _nesting(raw: bytes) -> int:
    """How deep brackets nest in a JSON text (strings skipped), in one linear pass."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"]}":
            depth -= 1
    return deepest


async def read_training_image(upload: UploadFile) -> tuple[bytes, str]:
    """One upload's bytes and extension, decoded in full (in a thread: a 20 MB JPEG takes a
    while) so a truncated file is refused now, not minutes later by the trainer."""
    name = upload.filename or "a photo"
    if upload.size is not None and upload.size > MAX_IMAGE_BYTES:
        raise RequestError(f"{name}: larger than {MAX_IMAGE_BYTES} bytes")
    return await asyncio.to_thread(check_image, await upload.read(), name)


def check_image(content: bytes, name: str) -> tuple[bytes, str]:
    """The photo's bytes and a file extension, after checking it really is a big enough image
    that decodes in full (an upload, or a fetched `image_urls` photo)."""
    if len(content) > MAX_IMAGE_BYTES:
        raise RequestError(f"{name}: larger than {MAX_IMAGE_BYTES} bytes")
    kind, size = _decode(content, name)
    if min(size) < MIN_PHOTO_SIDE:  # SDXL trains at 1024: an upscaled photo teaches blur
        raise RequestError(too_small_message(name, *size))
    return content, {"jpeg": "jpg"}.get(kind, kind or "img")


def _decode(content: bytes, name: str) -> tuple[str, tuple[int, int]]:
    try:
        with Image.open(io.BytesIO(content)) as image:
            kind = (image.format or "").lower()
            image.load()  # verify() reads no pixel data: a cut-off JPEG passes it
            return kind, image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        raise RequestError(f"{name}: not a readable image (damaged or cut off?)") from None


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
    if max(offset, limit, abs(before_id or 0)) > MAX_ID:
        raise HTTPError(400, f"limit, offset and before_id must be at most {MAX_ID}")
    return Page(min(limit, MAX_LIMIT), offset, before_id)


# -- middlewares ----------------------------------------------------------------------------


Undo = Callable[[], Awaitable[None]]
UndoScope = Callable[[], AbstractContextManager[Undo]]
"""Opened around each request: what it yields takes back the rows the request committed."""


def middlewares(api_key: str | None, undo_scope: UndoScope | None = None) -> list[Middleware]:
    """Outermost first: the last resort for bugs, the body size cap, the `.json` suffix, then
    the key check."""
    return [
        Middleware(ServerErrors, undo_scope),
        Middleware(BodyLimit, MAX_REQUEST_BYTES),
        Middleware(JsonSuffix),
        Middleware(BearerAuth, api_key),
    ]


class BodyLimit:
    """413 for a body over `max_bytes`: at once when Content-Length says so, else when the
    streamed bytes pass it (chunked uploads), before a handler can hold it all."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            too_big = JSONResponse({"error": self._message}, status_code=413)
            await too_big(scope, receive, send)
            return
        received = 0
        complete = False

        async def counted() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: what follows is the wait for a disconnect
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), BODY_IDLE_TIMEOUT_S)
            except TimeoutError:
                raise HTTPError(408, "the request body stalled") from None
            received += len(message.get("body", b""))
            complete = not message.get("more_body", False)
            if received > self.max_bytes:
                raise HTTPError(413, self._message)
            return message

        await self.app(scope, counted, send)

    @property
    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"


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

    A request that fails so leaves nothing behind: the rows it committed before failing (say,
    an answer that could not be encoded) are taken back through `undo_scope`.

    Not Starlette's `Exception` handler: that one re-raises after answering, so uvicorn logs the
    trace a second time and httpx's ASGI transport raises it inside a bot running the worker
    in-process, where a remote worker's client would have got a 500."""

    def __init__(self, app: ASGIApp, undo_scope: UndoScope | None = None) -> None:
        self.app = app
        self.undo_scope = undo_scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        undo_scope = self.undo_scope() if self.undo_scope else nullcontext(None)
        with undo_scope as undo:
            try:
                await self.app(scope, receive, tracked)
            except Exception:
                log.exception("%s %s failed", scope["method"], scope["path"])
                if undo is not None:
                    await self._take_back(undo)
                if started:  # half an answer is out: only the server can end it
                    raise
                response = JSONResponse({"error": "Internal server error"}, status_code=500)
                await response(scope, receive, send)

    @staticmethod
    async def _take_back(undo: Undo) -> None:
        try:
            await undo()
        except Exception:
            log.exception("could not take back what the failed request wrote")


# -- exception handlers ---------------------------------------------------------------------


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


def is_disk_full(exc: BaseException) -> bool:
    """The disk (or the database on it) is full: the operator's problem, not the request's."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)


async def _storage(request: Request, exc: Exception) -> Response:
    if not is_disk_full(exc):
        raise exc  # a bug: ServerErrors logs it, answers 500 and takes back what it wrote
    log.error("%s %s: the disk is full (%s)", request.method, request.url.path, exc)
    return JSONResponse({"error": DISK_FULL}, status_code=507)


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "Not found"}, status_code=404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "Method not allowed"}, status_code=405)


EXCEPTION_HANDLERS: dict[Any, ExceptionHandler] = {
    HTTPError: _http_error,
    OSError: _storage,
    sqlite3.OperationalError: _storage,
    404: _not_found,
    405: _not_allowed,
}
"""Astria's error shape for our HTTPError (RequestError: 422) and Starlette's unknown routes."""
