"""The HTTP face of the worker: the Astria API subset of docs/architecture.md §2, over Starlette.

The routes are plain handlers: they parse with `params`, read and write the store, wake the
runner and answer Astria's JSON shapes (`serialize`). What every route shares lives in http.py:
body and image reading, paging, the `.json` suffix, auth (a bearer key, or loopback clients
only), and the exception handlers that turn a raised `HTTPError` into `{"error": "..."}` with
Astria's codes: 401 bad key, 404 unknown id, 422 invalid request (`RequestError`).
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import PurePosixPath
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from backends.base import JobStatus
from backends.local.errors import HTTPError, RequestError
from backends.local.file_cache import tune_key
from backends.local.health import health
from backends.local.http import (
    EXCEPTION_HANDLERS,
    MAX_LIMIT,
    Served,
    Undo,
    middlewares,
    read_body,
    read_page,
)
from backends.local.model_specs import native_size
from backends.local.packs.runs import attributes_plan
from backends.local.params import parse_prompt
from backends.local.records import JobKind, JobState, Row
from backends.local.serialize import base_tune_json, prompt_json, tune_json
from backends.local.storage import BadKey
from backends.local.store import now_iso, recording_creations
from backends.local.tune_intake import TuneIntake, read_tune_fields

log = logging.getLogger(__name__)


def create_app(worker: Served) -> Starlette:
    """The ASGI app of `worker` (its lifespan starts/stops the worker when uvicorn runs it)."""
    from backends.local import pack_routes  # its routes come first (see below)

    intake = TuneIntake(worker)
    api = _Api(worker, intake)
    routes = [
        *pack_routes.routes(worker, intake),  # /files/models/... first
        Route("/tunes", api.create_tune, methods=["POST"]),
        Route("/tunes", api.list_tunes, methods=["GET"]),
        Route("/tunes/{tune_id:id}", api.get_tune, methods=["GET"]),
        Route("/tunes/{tune_id:id}", api.delete_tune, methods=["DELETE"]),
        Route("/tunes/{tune_id:id}/prompts", api.create_prompt, methods=["POST"]),
        Route("/tunes/{tune_id:id}/prompts", api.list_prompts, methods=["GET"]),
        Route("/tunes/{tune_id:id}/prompts/{prompt_id:id}", api.get_prompt, methods=["GET"]),
        Route("/tunes/{tune_id:id}/prompts/{prompt_id:id}", api.delete_prompt, methods=["DELETE"]),
        Route("/prompts/{prompt_id:id}", api.get_prompt, methods=["GET"]),
        Route("/prompts/{prompt_id:id}", api.delete_prompt, methods=["DELETE"]),
        Route("/images/inspect", worker.inspect, methods=["POST"]),
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

    return Starlette(
        routes=routes,
        middleware=middlewares(worker.config.api_key, api.undo_scope),
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )


class _Api:
    """The endpoint handlers; errors are raised (HTTPError, RequestError) and answered by
    http.py's exception handlers."""

    def __init__(self, worker: Served, intake: TuneIntake) -> None:
        self.worker = worker
        self.config = worker.config
        self.store = worker.store
        self.intake = intake

    # -- tunes ---------------------------------------------------------------------------

    async def create_tune(self, request: Request) -> Response:
        fields = await read_tune_fields(request)
        plan = attributes_plan(fields.get("prompts_attributes"))
        accepted = await self.intake.accept(fields, self._base(request), lambda _: plan)
        return JSONResponse(tune_json(accepted.tune, self._base(request)), status_code=201)

    async def list_tunes(self, request: Request) -> Response:
        page = read_page(request)
        rows = await self.store.list_tunes(
            limit=page.limit, offset=page.offset, before_id=page.before_id
        )
        return JSONResponse([self._tune(r, request) for r in rows])

    async def get_tune(self, request: Request) -> Response:
        tune_id = request.path_params["tune_id"]
        if tune_id in self.config.base_models():
            created = self.worker.started_at or now_iso()
            return JSONResponse(base_tune_json(tune_id, self._base(request), created))
        return JSONResponse(self._tune(await self._tune_row(tune_id), request))

    async def delete_tune(self, request: Request) -> Response:
        """The tune and the prompts made on it (a pack run's, a shoot's): as Astria deletes a
        tune's prompts with it, so /delete leaves no image of the user here."""
        tune = await self._tune_row(request.path_params["tune_id"])
        while prompts := await self.store.list_prompts(
            tune["id"], limit=MAX_LIMIT, offset=0, before_id=None
        ):
            for prompt in prompts:
                await self._forget(prompt, JobKind.PROMPT)
        await self._forget(tune, JobKind.TUNE)
        return JSONResponse({"message": "Tune successfully deleted"})

    # -- prompts -------------------------------------------------------------------------

    async def create_prompt(self, request: Request) -> Response:
        tune_id = request.path_params["tune_id"]
        base_models = self.config.base_models()
        if tune_id in base_models:
            spec = base_models[tune_id]
        else:
            url_tune = await self._tune_row(tune_id)
            if url_tune["state"] != JobState.DONE:
                raise RequestError(f"tune {tune_id} is not trained")
            spec = base_models.get(url_tune["base_tune_id"], "")
        body = await read_body(request, JobKind.PROMPT)
        prompt = parse_prompt(
            body.fields,
            native_size=native_size(spec),
            max_side=self.config.max_side,
            random_seed=random.randrange(2**32),
        )
        if prompt.lora_tune_id is not None:
            lora = await self.store.get_tune(prompt.lora_tune_id)
            if lora is None:
                raise RequestError(f"unknown LoRA tune {prompt.lora_tune_id}")
            if lora["state"] != JobState.DONE:
                raise RequestError(f"tune {prompt.lora_tune_id} is not trained")
            if tune_id not in base_models and prompt.lora_tune_id != tune_id:
                raise RequestError("prompt a LoRA tune through a base model id")
        row = await self.store.create_prompt(tune_id, prompt.to_json(), origin=self._base(request))
        self.worker.runner.wake()
        return JSONResponse(await self._prompt(row, request), status_code=201)

    async def list_prompts(self, request: Request) -> Response:
        tune_id = request.path_params["tune_id"]
        if tune_id not in self.config.base_models():
            await self._tune_row(tune_id)
        page = read_page(request)
        rows = await self.store.list_prompts(
            tune_id, limit=page.limit, offset=page.offset, before_id=page.before_id
        )
        return JSONResponse([await self._prompt(r, request) for r in rows])

    async def get_prompt(self, request: Request) -> Response:
        row = await self._prompt_row(request)
        return JSONResponse(await self._prompt(row, request))

    async def delete_prompt(self, request: Request) -> Response:
        await self._forget(await self._prompt_row(request), JobKind.PROMPT)
        return JSONResponse({"message": "Prompt successfully deleted"})

    # -- health and files ----------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        w = self.worker
        report = await health(w.store, w.runner, w.config.sdxl_model, w.started_at)
        return JSONResponse(report, status_code=200 if report["ok"] else 503)

    async def get_file(self, request: Request) -> Response:
        try:  # the fleet's files are in S3: the client fetches them there, no credentials
            link = await self.worker.storage.presigned_url(request.path_params["path"])
        except BadKey:
            raise HTTPError(404, "Not found") from None
        if link is not None:
            return RedirectResponse(link, status_code=307)
        root = self.config.files_dir.resolve()
        try:  # a NUL or a name too long for the filesystem: no such file either
            path = (root / request.path_params["path"]).resolve()
            found = path.is_relative_to(root) and path.is_file()
        except (OSError, ValueError):
            found = False
        if not found:
            raise HTTPError(404, "Not found")
        return FileResponse(path, headers={"Cache-Control": "private, max-age=86400"})

    # -- helpers -------------------------------------------------------------------------

    @contextlib.contextmanager
    def undo_scope(self) -> Iterator[Undo]:
        """For http.ServerErrors: a request that fails after committing a row takes it back."""
        with recording_creations() as created:

            async def undo() -> None:
                for kind, row_id in created:
                    row = await self.store.get_row(kind, row_id)
                    if row is not None:
                        log.warning("taking back %s %s of the failed request", kind, row_id)
                        await self._forget(row, kind)

            yield undo

    async def _forget(self, row: Row, kind: JobKind) -> None:
        """Delete a tune or prompt: its row, then its files (a file left by a crash in between
        names no row, and the next start removes it)."""
        if kind == JobKind.TUNE:
            await self.store.delete_tune(row["id"])
        else:
            await self.store.delete_prompt(row["id"])
        # A running job stops at its next check: a training frees the GPU, a prompt skips its
        # hires pass and face redraw.
        self.worker.runner.cancel(kind, row["id"])
        folders = {PurePosixPath(p).parent.as_posix() for p in row["images"]}
        folders.add(f"{kind.table}/{row['id']}")
        if kind == JobKind.TUNE:
            shutil.rmtree(self.config.tunes_dir / str(row["id"]), ignore_errors=True)
            folders.add(tune_key(row["id"], "").rstrip("/"))  # the fleet's copy of the model
        for folder in folders:
            await self.worker.storage.delete_folder(folder)

    def _base(self, request: Request) -> str:
        return (self.config.public_url or str(request.base_url)).rstrip("/")

    async def _tune_row(self, tune_id: int) -> Row:
        row = await self.store.get_tune(tune_id)
        if row is None:
            raise HTTPError(404, f"Tune {tune_id} not found")
        return row

    async def _prompt_row(self, request: Request) -> Row:
        prompt_id = request.path_params["prompt_id"]
        row = await self.store.get_prompt(prompt_id)
        tune_id = request.path_params.get("tune_id")
        if row is None or (tune_id is not None and row["tune_id"] != tune_id):
            raise HTTPError(404, f"Prompt {prompt_id} not found")
        return row

    def _tune(self, row: Row, request: Request) -> dict[str, Any]:
        progress, eta = self.worker.runner.job_progress(JobKind.TUNE, row)
        data = tune_json(row, self._base(request), progress)
        if data["status"] == JobStatus.PROCESSING:  # Astria's `eta`: when training should end
            data["eta"] = eta
        return data

    async def _prompt(self, row: Row, request: Request) -> dict[str, Any]:
        runner = self.worker.runner
        position = await runner.queue_position(row["id"])
        progress, _ = runner.job_progress(JobKind.PROMPT, row)
        return prompt_json(row, self._base(request), progress, position)
