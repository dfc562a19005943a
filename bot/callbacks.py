"""The HTTP endpoint backends POST callbacks to when `PUBLIC_URL` is set.

A callback only wakes the job's poller: the body is never trusted (callbacks carry no
signature), the per-job secret in the URL decides whether the hint is taken at all.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.core.jobs import JobTracker

log = logging.getLogger(__name__)


def callback_app(tracker: JobTracker) -> Starlette:
    async def callback(request: Request) -> JSONResponse:
        kind = request.path_params["kind"]
        job_id = request.path_params["job_id"]
        if kind not in ("tune", "generation"):
            return JSONResponse({"error": "Not found"}, status_code=404)
        if not await tracker.wake(kind, job_id, request.path_params["secret"]):
            log.warning("callback for %s %s with a wrong secret was ignored", kind, job_id)
            return JSONResponse({"error": "Not found"}, status_code=404)
        return JSONResponse({"ok": True})

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/callbacks/{kind}/{job_id:int}/{secret}", callback, methods=["POST"]),
            Route("/healthz", healthz),
        ]
    )


class CallbackServer:
    """uvicorn serving `callback_app` as a task of the bot's event loop."""

    def __init__(self, tracker: JobTracker, *, host: str = "0.0.0.0", port: int = 8080) -> None:
        config = uvicorn.Config(
            callback_app(tracker), host=host, port=port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with suppress(asyncio.CancelledError):
            await self._task
        self._task = None
