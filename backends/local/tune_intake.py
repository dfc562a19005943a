"""Accepting a new tune: `POST /tunes`, and `POST /p/:id/tunes` without `tune_ids`.

Everything that can be refused is refused before anything is stored: the tune's fields, the
prompts that come with it (`tune[prompts_attributes][]`, or the pack's), then the photos
(uploaded parts, and `tune[image_urls][]` fetched under `fetch_urls.py`'s rules when
`WORKER_FETCH_URLS` is on). Then the tune row, its prompts (waiting for the training) and its
photos are written. The photos go to a fresh folder first, one at a time (at most one photo is
held in memory), and the one INSERT that names them commits the tune: a tune exists with all
its photos or not at all. A crash in between leaves a folder no row names, which the next start
removes (sweep.py); a refused request removes its folder at once.

Astria's idempotency: a title seen before returns that tune, and nothing new is made.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from backends.local.errors import RequestError
from backends.local.faults import FaultPoint, fault_at
from backends.local.fetch_urls import UrlFetcher
from backends.local.http import (
    MAX_IMAGE_BYTES,
    MAX_JSON_BYTES,
    MAX_TRAINING_IMAGES,
    Served,
    check_image,
    read_training_image,
)
from backends.local.model_specs import native_size
from backends.local.nested_params import read_nested
from backends.local.packs import runs
from backends.local.packs.records import PackRecords
from backends.local.params import TuneParams, parse_tune
from backends.local.records import JobKind, Row

log = logging.getLogger(__name__)

Planner = Callable[[TuneParams], runs.RunPlan | None]
"""The prompts a new tune comes with, given its validated fields (class, token ...)."""


async def read_tune_fields(request: Request) -> dict[str, Any]:
    """The `tune` part of a JSON or (multipart) form body, nested (`nested_params`)."""
    return await read_nested(
        request, "tune", max_files=MAX_TRAINING_IMAGES + 1, max_part_size=MAX_JSON_BYTES
    )


@dataclass(frozen=True)
class Accepted:
    tune: Row
    prompts: list[Row]
    created: bool
    """False when the title named an existing tune (nothing was made)."""


class TuneIntake:
    def __init__(self, worker: Served, fetcher: UrlFetcher | None = None) -> None:
        self.worker = worker
        self.config = worker.config
        self.fetcher = fetcher or UrlFetcher(MAX_IMAGE_BYTES)

    async def accept(
        self, fields: dict[str, Any], origin: str, plan: Planner | None = None
    ) -> Accepted:
        """`fields`: the request's `tune` tree (`nested_params`), files as UploadFiles."""
        uploads = [f for f in _list(fields.get("images")) if isinstance(f, UploadFile)]
        urls = [str(u) for u in _list(fields.get("image_urls")) if str(u).strip()]
        flat = {k: v for k, v in fields.items() if k not in ("images", "image_urls")}
        tune = parse_tune(
            flat, n_images=len(uploads) + len(urls), base_ids=set(self.config.base_models())
        )
        if len(uploads) + len(urls) > MAX_TRAINING_IMAGES:
            raise RequestError(f"at most {MAX_TRAINING_IMAGES} images per tune")
        run_plan = plan(tune) if plan else None
        size = native_size(self.config.base_models()[tune.base_tune_id])
        if run_plan is not None:
            runs.check(run_plan, token=tune.token, native_size=size, max_side=self.config.max_side)
        store = self.worker.store
        existing = await store.find_tune_by_title(tune.title)
        if existing is not None:
            return Accepted(existing, [], created=False)
        if urls and not self.config.fetch_urls:
            raise RequestError(
                "image_urls are off on this worker (WORKER_FETCH_URLS); upload the files"
            )
        folder = Path(JobKind.TUNE.table) / secrets.token_hex(8)
        try:
            paths = await self._save_training_images(folder, uploads, urls)
            fault_at(FaultPoint.TUNE_PHOTOS_WRITTEN)
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
                paths,
                origin=origin,
            )
            fault_at(FaultPoint.TUNE_INSERTED)
        except BaseException:
            await self.worker.storage.delete_folder(folder.as_posix())
            raise
        prompts: list[Row] = []
        if run_plan is not None:
            records = PackRecords(store)
            prompts = await runs.queue(
                store,
                records,
                row,
                run_plan,
                native_size=size,
                max_side=self.config.max_side,
                origin=origin,
            )
        self.worker.runner.wake()
        fresh = await store.get_tune(row["id"])
        assert fresh is not None
        log.info("tune %s queued with %d images, %d prompts", row["id"], len(paths), len(prompts))
        return Accepted(fresh, prompts, created=True)

    async def _save_training_images(
        self, folder: Path, uploads: list[UploadFile], urls: list[str]
    ) -> list[str]:
        """Check each photo (uploaded, then fetched) and write it under `folder`, one at a
        time; the relative paths, for the tune's row."""
        paths: list[str] = []

        async def write(content: bytes, ext: str) -> None:
            rel = folder / f"{secrets.token_hex(8)}-{len(paths)}.{ext}"
            fault_at(FaultPoint.TUNE_PHOTO_WRITE)
            await self.worker.storage.put(rel.as_posix(), content)
            paths.append(rel.as_posix())

        for upload in uploads:
            await write(*await read_training_image(upload))
        for url in urls:
            fetched = await self.fetcher.fetch(url)
            # Decoded in full in a thread, like an upload: a big photo must not stall the API.
            await write(*await asyncio.to_thread(check_image, fetched, url.split("?")[0]))
        return paths


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
