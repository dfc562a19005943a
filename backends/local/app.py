"""The HTTP face of the worker: the Astria API subset of design.md §2, over Starlette.

Requests come as JSON (`{"prompt": {...}}`, the root key optional) or as forms/multipart with
Rails-style keys (`prompt[text]`, `tune[images][]`). Every path also answers with a `.json`
suffix. Errors are `{"error": "..."}` with Astria's codes: 401 bad key, 404 unknown id,
422 invalid request.

Auth: with an API key configured, every request (files included) needs `Authorization: Bearer
<key>`; without one, only loopback clients are served (a worker on 0.0.0.0 with no key must not
be an open GPU for the network). Image files have unguessable names on top of that.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import ipaddress
import logging
import random
import re
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from backends.base import SDXL_BASE_TUNE_ID
from backends.local import params as validate
from backends.local.health import health
from backends.local.inspection import inspect_endpoint
from backends.local.models import native_size
from backends.local.serialize import prompt_json, tune_json
from backends.local.store import DONE, now_iso
from backends.local.training_data import MIN_PHOTO_SIDE, too_small_message

if TYPE_CHECKING:
    from backends.local import Worker

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 30 * 1024 * 1024
MAX_TRAINING_IMAGES = 50
DEFAULT_LIMIT = 20
MAX_LIMIT = 120
OPEN_PATHS = frozenset({"/healthz"})
"""Served without a key (probes); they show no secret and start no work."""
KEY = re.compile(r"^(?P<root>[a-z_]+)\[(?P<name>[a-z_]+)\](?P<list>\[\])?$")


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(worker: Worker) -> ASGIApp:
    """The ASGI app of `worker` (its lifespan starts/stops the worker when uvicorn runs it)."""
    api = _Api(worker)
    routes = [
        Route("/tunes", api.create_tune, methods=["POST"]),
        Route("/tunes", api.list_tunes, methods=["GET"]),
        Route("/tunes/{tune_id:int}", api.get_tune, methods=["GET"]),
        Route("/tunes/{tune_id:int}", api.delete_tune, methods=["DELETE"]),
        Route("/tunes/{tune_id:int}/prompts", api.create_prompt, methods=["POST"]),
        Route("/tunes/{tune_id:int}/prompts", api.list_prompts, methods=["GET"]),
        Route("/tunes/{tune_id:int}/prompts/{prompt_id:int}", api.get_prompt, methods=["GET"]),
        Route(
            "/tunes/{tune_id:int}/prompts/{prompt_id:int}", api.delete_prompt, methods=["DELETE"]
        ),
        Route("/prompts/{prompt_id:int}", api.get_prompt, methods=["GET"]),
        Route("/prompts/{prompt_id:int}", api.delete_prompt, methods=["DELETE"]),
        Route("/images/inspect", inspect_endpoint(worker.config.face_detector), methods=["POST"]),
        Route("/files/{path:path}", api.get_file, methods=["GET", "HEAD"]),
        Route("/healthz", api.healthz, methods=["GET", "HEAD"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await worker.start()
        try:
            yield
        finally:
            await worker.stop()

    app = Starlette(
        routes=routes,
        exception_handlers={404: _not_found, 405: _not_allowed},
        lifespan=lifespan,
    )
    return _JsonSuffix(_Auth(app, worker.config.api_key))


class _JsonSuffix:
    """`/tunes/1.json` == `/tunes/1` (Astria's URLs end in .json); files keep their names."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.endswith(".json") and not path.startswith("/files/"):
            scope = {**scope, "path": path[: -len(".json")]}
        await self.app(scope, receive, send)


class _Auth:
    """Bearer key check, or loopback-only when no key is configured; /healthz is open."""

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


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "Not found"}, status_code=404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "Method not allowed"}, status_code=405)


class _Api:
    """The endpoint handlers; each turns HTTPError/RequestError into Astria's error JSON."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.config = worker.config

    # -- tunes ---------------------------------------------------------------------------

    async def create_tune(self, request: Request) -> Response:
        async def handle() -> Response:
            fields, files = await _read_body(request, "tune")
            uploads = [f for f in files.get("images", [])]
            tune = validate.parse_tune(
                fields, n_images=len(uploads), base_ids=set(self.config.base_models())
            )
            if len(uploads) > MAX_TRAINING_IMAGES:
                raise validate.RequestError(f"at most {MAX_TRAINING_IMAGES} images per tune")
            images = [await _read_image(u) for u in uploads]
            store = self.worker.store
            existing = await store.find_tune_by_title(tune.title)
            if existing is not None:  # Astria's idempotency: the same title is the same tune
                return JSONResponse(tune_json(existing, self._base(request)), status_code=201)
            row = await store.create_tune(
                {
                    "title": tune.title,
                    "name": tune.name,
                    "token": tune.token,
                    "base_tune_id": tune.base_tune_id,
                    "model_type": tune.model_type,
                    "steps": tune.steps,
                    "face_crop": tune.face_crop,
                    "branch": tune.branch,
                    "callback": tune.callback,
                },
                [],
                origin=self._base(request),
            )
            paths = self._save_training_images(row["id"], images)
            await store.set_tune_images(row["id"], paths)
            self.worker.runner.wake()
            row = await store.get_tune(row["id"])
            assert row is not None
            log.info("tune %s queued with %d images", row["id"], len(paths))
            return JSONResponse(tune_json(row, self._base(request)), status_code=201)

        return await _guard(handle)

    async def list_tunes(self, request: Request) -> Response:
        async def handle() -> Response:
            limit, offset, before = _page(request)
            rows = await self.worker.store.list_tunes(limit=limit, offset=offset, before_id=before)
            return JSONResponse([self._tune(r, request) for r in rows])

        return await _guard(handle)

    async def get_tune(self, request: Request) -> Response:
        async def handle() -> Response:
            tune_id = request.path_params["tune_id"]
            if tune_id in self.config.base_models():
                return JSONResponse(self._base_tune(tune_id, request))
            return JSONResponse(self._tune(await self._tune_row(tune_id), request))

        return await _guard(handle)

    async def delete_tune(self, request: Request) -> Response:
        async def handle() -> Response:
            tune_id = request.path_params["tune_id"]
            await self._tune_row(tune_id)
            await self.worker.store.delete_tune(tune_id)
            shutil.rmtree(self.config.tunes_dir / str(tune_id), ignore_errors=True)
            shutil.rmtree(self.config.files_dir / "tunes" / str(tune_id), ignore_errors=True)
            return JSONResponse({"message": "Tune successfully deleted"})

        return await _guard(handle)

    # -- prompts -------------------------------------------------------------------------

    async def create_prompt(self, request: Request) -> Response:
        async def handle() -> Response:
            tune_id = request.path_params["tune_id"]
            base_models = self.config.base_models()
            if tune_id in base_models:
                spec = base_models[tune_id]
            else:
                url_tune = await self._tune_row(tune_id)
                if url_tune["state"] != DONE:
                    raise validate.RequestError(f"tune {tune_id} is not trained")
                spec = base_models.get(url_tune["base_tune_id"], "")
            fields, _ = await _read_body(request, "prompt")
            prompt = validate.parse_prompt(
                fields,
                native_size=native_size(spec),
                max_side=self.config.max_side,
                random_seed=random.randrange(2**32),
            )
            if prompt.lora_tune_id is not None:
                lora = await self.worker.store.get_tune(prompt.lora_tune_id)
                if lora is None:
                    raise validate.RequestError(f"unknown LoRA tune {prompt.lora_tune_id}")
                if lora["state"] != DONE:
                    raise validate.RequestError(f"tune {prompt.lora_tune_id} is not trained")
                if tune_id not in base_models and prompt.lora_tune_id != tune_id:
                    raise validate.RequestError("prompt a LoRA tune through a base model id")
            row = await self.worker.store.create_prompt(
                tune_id, prompt.to_json(), origin=self._base(request)
            )
            self.worker.runner.wake()
            return JSONResponse(await self._prompt(row, request), status_code=201)

        return await _guard(handle)

    async def list_prompts(self, request: Request) -> Response:
        async def handle() -> Response:
            tune_id = request.path_params["tune_id"]
            if tune_id not in self.config.base_models():
                await self._tune_row(tune_id)
            limit, offset, before = _page(request)
            rows = await self.worker.store.list_prompts(
                tune_id, limit=limit, offset=offset, before_id=before
            )
            return JSONResponse([await self._prompt(r, request) for r in rows])

        return await _guard(handle)

    async def get_prompt(self, request: Request) -> Response:
        async def handle() -> Response:
            row = await self._prompt_row(request)
            return JSONResponse(await self._prompt(row, request))

        return await _guard(handle)

    async def delete_prompt(self, request: Request) -> Response:
        async def handle() -> Response:
            row = await self._prompt_row(request)
            await self.worker.store.delete_prompt(row["id"])
            shutil.rmtree(self.config.files_dir / "prompts" / str(row["id"]), ignore_errors=True)
            return JSONResponse({"message": "Prompt successfully deleted"})

        return await _guard(handle)

    # -- health --------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        report = await health(self.worker)
        return JSONResponse(report, status_code=200 if report["ok"] else 503)

    # -- files ---------------------------------------------------------------------------

    async def get_file(self, request: Request) -> Response:
        root = self.config.files_dir.resolve()
        path = (root / request.path_params["path"]).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return JSONResponse({"error": "Not found"}, status_code=404)
        return FileResponse(path, headers={"Cache-Control": "private, max-age=86400"})

    # -- helpers -------------------------------------------------------------------------

    def _base(self, request: Request) -> str:
        return (self.config.public_url or str(request.base_url)).rstrip("/")

    async def _tune_row(self, tune_id: int) -> dict[str, Any]:
        row = await self.worker.store.get_tune(tune_id)
        if row is None:
            raise HTTPError(404, f"Tune {tune_id} not found")
        return row

    async def _prompt_row(self, request: Request) -> dict[str, Any]:
        prompt_id = request.path_params["prompt_id"]
        row = await self.worker.store.get_prompt(prompt_id)
        tune_id = request.path_params.get("tune_id")
        if row is None or (tune_id is not None and row["tune_id"] != tune_id):
            raise HTTPError(404, f"Prompt {prompt_id} not found")
        return row

    def _tune(self, row: dict[str, Any], request: Request) -> dict[str, Any]:
        key = ("tune", row["id"])
        data = tune_json(row, self._base(request), self.worker.runner.progress.get(key))
        if data["status"] == "processing":  # Astria's `eta`: when the training should be done
            data["eta"] = self.worker.runner.eta.get(key)
        return data

    async def _prompt(self, row: dict[str, Any], request: Request) -> dict[str, Any]:
        runner = self.worker.runner
        position = await runner.queue_position(row["id"])
        progress = runner.progress.get(("prompt", row["id"]))
        return prompt_json(row, self._base(request), progress, position)

    def _base_tune(self, tune_id: int, request: Request) -> dict[str, Any]:
        """A base model, shown as Astria shows its gallery tunes: trained, no token."""
        created = self.worker.started_at or now_iso()
        title = "SDXL 1.0" if tune_id == SDXL_BASE_TUNE_ID else f"Base model {tune_id}"
        row = {
            "id": tune_id,
            "title": title,
            "name": None,
            "token": None,
            "callback": None,
            "trained_at": created,
            "started_training_at": created,
            "created_at": created,
            "updated_at": created,
            "model_type": None,
            "base_tune_id": None,
            "branch": "sdxl1",
            "steps": None,
            "face_crop": None,
            "images": [],
            "error": None,
            "state": DONE,
        }
        return tune_json(row, self._base(request))

    def _save_training_images(self, tune_id: int, images: list[tuple[bytes, str]]) -> list[str]:
        folder = Path("tunes") / str(tune_id)
        (self.config.files_dir / folder).mkdir(parents=True, exist_ok=True)
        paths = []
        for i, (content, ext) in enumerate(images):
            rel = folder / f"{secrets.token_hex(8)}-{i}.{ext}"
            (self.config.files_dir / rel).write_bytes(content)
            paths.append(rel.as_posix())
        return paths


async def _guard(handle: Any) -> Response:
    try:
        return await handle()
    except validate.RequestError as exc:
        return JSONResponse({"error": str(exc)}, status_code=422)
    except HTTPError as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)


async def _read_body(request: Request, root: str) -> tuple[dict[str, Any], dict[str, list]]:
    """Fields and file parts of a JSON, urlencoded or multipart body, without the root key."""
    content_type = request.headers.get("content-type", "")
    files: dict[str, list] = {}
    if content_type.startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            raise validate.RequestError("the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise validate.RequestError(f"the body must be a JSON object with {root!r}")
        inner = body.get(root, body)
        if not isinstance(inner, dict):
            raise validate.RequestError(f"{root!r} must be an object")
        return inner, files
    try:
        form = await request.form(max_files=MAX_TRAINING_IMAGES + 1, max_part_size=MAX_IMAGE_BYTES)
    except Exception as exc:  # malformed multipart
        raise validate.RequestError(f"cannot read the form: {exc}") from None
    fields: dict[str, Any] = {}
    for key, value in form.multi_items():
        match = KEY.match(key)
        if not match or match["root"] != root:
            continue
        name = match["name"]
        if isinstance(value, UploadFile):
            files.setdefault(name, []).append(value)
        elif match["list"]:
            fields.setdefault(name, []).append(value)
        else:
            fields[name] = value
    return fields, files


async def _read_image(upload: UploadFile) -> tuple[bytes, str]:
    """The upload's bytes and a file extension, after checking it really is an image."""
    content = await upload.read()
    if len(content) > MAX_IMAGE_BYTES:
        raise validate.RequestError(f"{upload.filename}: larger than {MAX_IMAGE_BYTES} bytes")
    try:
        with Image.open(io.BytesIO(content)) as image:
            kind = (image.format or "").lower()
            size = image.size
            image.verify()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        raise validate.RequestError(f"{upload.filename}: not a readable image") from None
    if min(size) < MIN_PHOTO_SIDE:  # SDXL trains at 1024: an upscaled photo teaches blur
        raise validate.RequestError(too_small_message(upload.filename or "a photo", *size))
    return content, {"jpeg": "jpg"}.get(kind, kind or "img")


def _page(request: Request) -> tuple[int, int, int | None]:
    try:
        limit = int(request.query_params.get("limit", DEFAULT_LIMIT))
        offset = int(request.query_params.get("offset", 0))
        before = request.query_params.get("before_id")
        before_id = int(before) if before else None
    except ValueError:
        raise HTTPError(400, "limit, offset and before_id must be integers") from None
    if offset < 0 or limit < 1:
        raise HTTPError(400, "limit must be positive and offset not negative")
    return min(limit, MAX_LIMIT), offset, before_id
