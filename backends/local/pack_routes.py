"""Packs, likes and model downloads over HTTP (design.md §6), shaped as Astria's.

- `GET /packs` and `GET /gallery/packs`: the catalog (`packs/catalog.py`; on this worker every
  pack is the operator's and public, so both list all of it), `?order=likes` most liked first.
  Each pack has `costs` per class (`num_images`; `cost` 0: the worker does not bill, the bot
  applies its own prices), `cost_mc_hash` and `likes`.
- `GET /p/:id` and `GET /p/:slug.json`: the same plus `prompts_per_class`: each prompt's `id`,
  `text`, `num_images` and `likes` (Astria shows sample `images`; ours has none, `[]`).
- `POST /p/:id/tunes`: without `tune_ids`, a new tune exactly as `POST /tunes` makes one (same
  fields, photos or `image_urls`), whose pack prompts run once it is trained; answers the tune
  object (201) with our extra `prompts`. With `tune_ids`, the pack's prompts on each of those
  tunes (untrained ones: when their training ends), answered `{"message": "Prompts created",
  "tunes": [...], "prompts": [...]}`. `prompt_ids`, `characteristics`, `prompt_attributes`
  and `prompts_callback` as documented (see `packs/runs.py`). A class the pack lacks is a 422
  naming the classes it has; an unknown pack or tune a 404.
- `POST`/`DELETE /prompts/:id/likes` (also `/like`): 201, no body.
- `GET /files/models/:tune_id/:name`: a trained tune's model files (`tune_files.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from backends.base import SDXL_BASE_TUNE_ID
from backends.local import tune_files
from backends.local.errors import HTTPError, RequestError
from backends.local.file_cache import tune_key
from backends.local.http import Served
from backends.local.model_specs import native_size
from backends.local.packs import runs
from backends.local.packs.catalog import SUBJECT_TOKEN, Catalog, Pack, load_catalog
from backends.local.packs.records import PackRecords
from backends.local.records import JobState
from backends.local.serialize import prompt_json, tune_json
from backends.local.store import astria_time
from backends.local.tune_intake import TuneIntake, read_tune_fields


def routes(worker: Served, intake: TuneIntake) -> list[Route]:
    """The routes, with the catalog loaded now: a bad pack file stops the worker at start."""
    api = PackApi(worker, intake, load_catalog(worker.config.packs_dir))
    return [
        Route("/packs", api.list_packs, methods=["GET"]),
        Route("/gallery/packs", api.list_packs, methods=["GET"]),
        Route("/p/{key}", api.get_pack, methods=["GET"]),
        Route("/p/{key}/tunes", api.run_pack, methods=["POST"]),
        Route("/prompts/{prompt_id:int}/likes", api.like, methods=["POST", "DELETE"]),
        Route("/prompts/{prompt_id:int}/like", api.like, methods=["POST", "DELETE"]),
        Route(tune_files.ROUTE, api.model_file, methods=["GET", "HEAD"]),
    ]


class PackApi:
    def __init__(self, worker: Served, intake: TuneIntake, catalog: Catalog) -> None:
        self.worker = worker
        self.config = worker.config
        self.intake = intake
        self.catalog = catalog
        self.records = PackRecords(worker.store)

    async def list_packs(self, request: Request) -> Response:
        likes = await self.records.likes_per_pack_prompt()
        packs = list(self.catalog.packs)
        order = request.query_params.get("order", "")
        if order == "likes":
            packs.sort(key=lambda p: -_pack_likes(p, likes))
        elif order not in ("", "id"):
            raise RequestError("order must be likes or id")
        return JSONResponse([pack_json(p, likes) for p in packs])

    async def get_pack(self, request: Request) -> Response:
        pack = self._pack(request)
        likes = await self.records.likes_per_pack_prompt()
        return JSONResponse(pack_json(pack, likes, with_prompts=True))

    async def run_pack(self, request: Request) -> Response:
        pack = self._pack(request)
        fields = await read_tune_fields(request)
        base = _base(self.config.public_url, request)
        tune_ids = runs.parse_ids(fields.get("tune_ids"), "tune_ids")
        if tune_ids:
            return await self._on_existing_tunes(pack, tune_ids, fields, base)
        accepted = await self.intake.accept(
            fields, base, lambda tune: runs.pack_plan(pack, tune.name, fields)
        )
        body = tune_json(accepted.tune, base)
        body["prompts"] = [prompt_json(row, base) for row in accepted.prompts]
        return JSONResponse(body, status_code=201)

    async def _on_existing_tunes(
        self, pack: Pack, tune_ids: list[int], fields: dict[str, Any], base: str
    ) -> Response:
        store = self.worker.store
        planned = []
        for tune_id in tune_ids:  # all checked before any is queued
            tune = await store.get_tune(tune_id)
            if tune is None:
                raise HTTPError(404, f"Tune {tune_id} not found")
            if tune["state"] == JobState.FAILED:
                raise RequestError(f"tune {tune_id} failed to train: {tune['error']}")
            plan = runs.pack_plan(pack, tune["name"], fields)
            size = self._native_size(tune)
            runs.check(plan, token=tune["token"], native_size=size, max_side=self.config.max_side)
            planned.append((tune, plan, size))
        prompts = []
        for tune, plan, size in planned:
            prompts += await runs.queue(
                store,
                self.records,
                tune,
                plan,
                native_size=size,
                max_side=self.config.max_side,
                origin=base,
            )
        self.worker.runner.wake()
        body = {
            "message": "Prompts created",
            "tunes": [tune_json(tune, base) for tune, _, _ in planned],
            "prompts": [prompt_json(row, base) for row in prompts],
        }
        return JSONResponse(body, status_code=201)

    async def like(self, request: Request) -> Response:
        prompt_id = request.path_params["prompt_id"]
        prompt = await self.worker.store.get_prompt(prompt_id)
        if prompt is None:
            raise HTTPError(404, f"Prompt {prompt_id} not found")
        if request.method == "POST":
            await self.records.like(prompt)
        else:
            await self.records.unlike(prompt_id)
        return Response(status_code=201)

    async def model_file(self, request: Request) -> Response:
        """GET /files/models/:tune_id/:name: one of a trained tune's model files."""
        tune_id, name = request.path_params["tune_id"], request.path_params["name"]
        row = tune_files.check_downloadable(await self.worker.store.get_tune(tune_id), name)
        link = await self.worker.storage.presigned_url(tune_key(tune_id, name))
        if link is not None:  # the fleet: the files are in S3, fetched there without a key
            return RedirectResponse(link, status_code=307)
        path = tune_files.model_file(row, self.config.tunes_dir, name)
        return FileResponse(
            path, media_type="application/octet-stream", filename=f"{tune_id}-{name}"
        )

    def _pack(self, request: Request) -> Pack:
        key = request.path_params["key"]
        pack = self.catalog.get(key)
        if pack is None:
            raise HTTPError(404, f"Pack {key} not found")
        return pack

    def _native_size(self, tune: dict[str, Any]) -> int:
        return native_size(self.config.base_models().get(tune["base_tune_id"], ""))


def pack_json(pack: Pack, likes: dict[int, int], *, with_prompts: bool = False) -> dict[str, Any]:
    """A pack as Astria shows it (list item fields plus `costs`; `prompts_per_class` on
    request), with `description` and `likes` of our own."""
    stamp = _timestamp(pack)
    data: dict[str, Any] = {
        "id": pack.id,
        "slug": pack.slug,
        "title": pack.title,
        "description": pack.description,
        "cover_url": None,
        "base_tune_id": SDXL_BASE_TUNE_ID,
        "token": SUBJECT_TOKEN,
        "model_type": "pti",
        "created_at": stamp,
        "updated_at": stamp,
        "public_at": stamp,
        "unlisted_at": None,
        "costs": {c: {"cost": 0, "num_images": pack.num_images(c)} for c in pack.classes},
        "cost_mc_hash": dict.fromkeys(pack.classes, 0),
        "likes": _pack_likes(pack, likes),
    }
    if with_prompts:
        data["prompts_per_class"] = {
            class_name: [
                {
                    "id": p.id,
                    "text": p.text,
                    "negative_prompt": p.negative_prompt,
                    "num_images": p.num_images,
                    "likes": likes.get(p.id, 0),
                    "images": [],
                }
                for p in prompts
            ]
            for class_name, prompts in pack.prompts.items()
        }
    return data


def _pack_likes(pack: Pack, likes: dict[int, int]) -> int:
    return sum(likes.get(p.id, 0) for prompts in pack.prompts.values() for p in prompts)


def _timestamp(pack: Pack) -> str:
    """When the pack file last changed, in Astria's timestamp style."""
    return astria_time(datetime.fromtimestamp(pack.source.stat().st_mtime, UTC))


def _base(public_url: str | None, request: Request) -> str:
    return (public_url or str(request.base_url)).rstrip("/")
