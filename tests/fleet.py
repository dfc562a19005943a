"""A worker fleet for tests and bench/fleet.py: real PostgreSQL (migrated), the S3 fake, GPU
worker subprocesses (`tests.fleet_stub_worker`: the real gpu-worker with a sleeping GPU) and
API replicas (the real fleet API under uvicorn in this process)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
from PIL import Image

from backends.local.config import WorkerConfig
from backends.local.fleet_api import FleetWorker
from backends.local.fleet_config import FleetConfig
from tests.fakes.s3 import FakeS3
from tests.worker_fixtures import run_uvicorn

ROOT = Path(__file__).resolve().parent.parent


class Fleet:
    """The shared parts of one fleet, and its GPU worker processes."""

    def __init__(self, database_url: str, s3: FakeS3, bucket: str, folder: Path, **env: str):
        self.folder = folder
        self.env = {
            **s3.env,
            "WORKER_DATABASE_URL": database_url,
            "WORKER_STORAGE_URL": f"s3://{bucket}/fleet",
            "WORKER_STALLED_S": "4",
            **env,
        }
        self.database_url = database_url
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        n = len(self.workers)
        log = (self.folder / f"gpu-{n}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.fleet_stub_worker"],
            cwd=ROOT,
            env={**os.environ, **self.env, "DATA_DIR": str(self.folder / f"gpu-{n}"), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(process)
        return process

    def logs(self) -> str:
        return "".join(path.read_text() for path in sorted(self.folder.glob("gpu-*.log")))

    def kill_running(self, kind: str, row_id: int) -> int:
        """kill -9 the worker that started the job last (the stub prints its pid); its pid."""
        starts = [line for line in self.logs().splitlines() if f"STUB {kind} {row_id} pid" in line]
        pid = int(starts[-1].rsplit(" ", 1)[1])
        os.kill(pid, signal.SIGKILL)
        return pid

    def jobs(self, task_name: str) -> list[dict[str, Any]]:
        with psycopg.connect(self.database_url) as conn:
            cursor = conn.execute(
                "SELECT (args->>'row_id')::bigint AS row_id, args->>'kind' AS kind, status,"
                " attempts FROM procrastinate_jobs WHERE task_name = %s ORDER BY id",
                (task_name,),
            )
            names = [c.name for c in cursor.description or []]
            return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]

    def stop(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.terminate()
        for process in self.workers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    @contextlib.asynccontextmanager
    async def api(self, replicas: int = 2) -> AsyncIterator[list[str]]:
        """`replicas` API processes' worth of the fleet API, each on its own port."""
        fleet = FleetConfig.from_env(self.env)
        async with contextlib.AsyncExitStack() as stack:
            urls = []
            for n in range(replicas):
                config = WorkerConfig(data_dir=self.folder / f"api-{n}")
                app = FleetWorker(config, fleet).app
                urls.append(await stack.enter_async_context(run_uvicorn(app)))
            yield urls


def photo_bytes(size: int = 1024) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 120, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


async def create_tune(http: httpx.AsyncClient, api: str, title: str, callback: str) -> int:
    photos = [("tune[images][]", (f"{i}.png", photo_bytes(), "image/png")) for i in range(2)]
    fields = {"tune[title]": title, "tune[name]": "man", "tune[callback]": callback}
    response = await http.post(f"{api}/tunes", data=fields, files=photos)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def create_prompt(
    http: httpx.AsyncClient, api: str, tune_id: int, text: str, callback: str, images: int = 1
) -> int:
    body = {
        "prompt": {
            "text": text,
            "num_images": images,
            "w": 64,
            "h": 64,
            "super_resolution": False,
            "inpaint_faces": False,
            "callback": callback,
        }
    }
    response = await http.post(f"{api}/tunes/{tune_id}/prompts", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


PACK = "corporate-headshots"
"""The shipped pack the fleet's pack tests run."""


async def pack_prompt_ids(http: httpx.AsyncClient, api: str, count: int) -> list[int]:
    """The ids of the pack's first `count` prompts for a man."""
    pack = (await http.get(f"{api}/p/{PACK}")).json()
    return [p["id"] for p in pack["prompts_per_class"]["man"][:count]]


async def run_pack_on_new_tune(
    http: httpx.AsyncClient,
    api: str,
    title: str,
    prompt_ids: list[int],
    callback: str,
    **fields: str,
) -> dict[str, Any]:
    """POST /p/PACK/tunes with one photo: a new tune (a man) and those prompts of the pack,
    `prompts_callback` = `callback`; `fields`: more form fields (`tune[callback]` ...)."""
    form: dict[str, Any] = {
        "tune[title]": title,
        "tune[name]": "man",
        "tune[prompts_callback]": callback,
        "tune[prompt_ids][]": [str(i) for i in prompt_ids],
        **fields,
    }
    photos = [("tune[images][]", ("0.png", photo_bytes(), "image/png"))]
    response = await http.post(f"{api}/p/{PACK}/tunes", data=form, files=photos)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]
