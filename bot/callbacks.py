"""The route backends POST callbacks to when `PUBLIC_URL` is set (served by `bot.web`).

A callback only wakes the job's poller: the body is never trusted (callbacks carry no
signature), the per-job secret in the URL decides whether the hint is taken at all.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import backends.routing  # noqa: F401  (registers the `{name:id}` route convertor)
from bot.core.jobs import JobTracker
from bot.core.records import JobKind

log = logging.getLogger(__name__)

CALLBACK_PATH = "/callbacks/{kind}/{job_id:id}/{secret}"
"""What `JobTracker.callback_url` builds after PUBLIC_URL (`id`: a row id SQLite can hold, so a
20-digit one is a 404, not an overflow in the store)."""


def callback_route(tracker: JobTracker) -> Route:
    async def callback(request: Request) -> JSONResponse:
        job_id = request.path_params["job_id"]
        try:
            kind = JobKind(request.path_params["kind"])
        except ValueError:
            return JSONResponse({"error": "Not found"}, status_code=404)
        if not await tracker.wake(kind, job_id, request.path_params["secret"]):
            log.warning("callback for %s %s with a wrong secret was ignored", kind, job_id)
            return JSONResponse({"error": "Not found"}, status_code=404)
        return JSONResponse({"ok": True})

    return Route(CALLBACK_PATH, callback, methods=["POST"])
