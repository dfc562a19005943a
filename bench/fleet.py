"""The worker fleet's scheduling, measured (issue #16): `python bench/fleet.py`.

Real PostgreSQL (TEST_DATABASE_URL, as the tests), the S3 fake, GPU worker subprocesses whose
GPU sleeps a fixed time per image (`tests.fleet_stub_worker`), one API in this process.

- Throughput with 1, 2 and 4 workers at 0.5 s per image: images/s and the ratio to 1 worker
  (target >= 0.9 x N).
- kill -9 of the worker running a prompt to the prompt running on another, at the default
  WORKER_STALLED_S (target <= 60 s).
- Queue overhead per job at 0 s per image: the fleet (procrastinate, S3, HTTP) against the
  single-machine worker (SQLite, in-process runner, local disk), both through their API.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.*, run as a script

from backends.base import SDXL_BASE_TUNE_ID
from backends.local import Worker, WorkerConfig
from backends.local.fleet_config import FleetConfig
from backends.local.migrate import migrate
from tests import pg
from tests.fakes.s3 import FakeS3
from tests.fleet import Fleet, create_prompt
from tests.fleet_stub_worker import SleepingEngine

DEFAULT_STALLED_S = str(FleetConfig.stalled_s)


def count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


async def poll(check: Any, limit_s: float = 300) -> None:
    """Wait for `check()` to hold, looking every 50 ms (the fleet is in other processes)."""
    async with asyncio.timeout(limit_s):
        while not check():  # noqa: ASYNC110 - a database and logs, nothing to wait on
            await asyncio.sleep(0.05)


class Bench:
    def __init__(self, server: str, s3: FakeS3, folder: Path) -> None:
        self.server = server
        self.s3 = s3
        self.folder = folder

    @contextlib.asynccontextmanager
    async def fleet(self, workers: int, **env: str) -> AsyncIterator[tuple[Fleet, str, str]]:
        """A fresh database and bucket, `workers` stub GPU workers registered, one API: the
        fleet, its database URL and the API's URL."""
        with pg.throwaway_database(self.server) as url:
            await migrate(url)
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            self.s3.create_bucket(bucket)
            folder = self.folder / bucket
            folder.mkdir()
            fleet = Fleet(url, self.s3, bucket, folder, **env)
            try:
                for _ in range(workers):
                    fleet.start_worker()
                registered = "SELECT count(*) FROM procrastinate_workers"
                await poll(lambda: count(url, registered) >= 2 * workers)  # gpu + callbacks
                async with fleet.api(replicas=1) as (api,):
                    yield fleet, url, api
            finally:
                fleet.stop()

    async def fleet_run(self, workers: int, prompts: int, image_s: float) -> float:
        """Seconds from the first request to the last prompt done."""
        async with (
            self.fleet(workers, STUB_IMAGE_S=str(image_s)) as (_, url, api),
            httpx.AsyncClient(timeout=60) as http,
        ):
            start = time.monotonic()
            await asyncio.gather(
                *(create_prompt(http, api, SDXL_BASE_TUNE_ID, f"p{i}", "") for i in range(prompts))
            )
            done = "SELECT count(*) FROM prompts WHERE state = 'done'"
            await poll(lambda: count(url, done) >= prompts)
            return time.monotonic() - start

    async def kill_to_rerun(self, stalled_s: str) -> float:
        """Seconds from kill -9 of the worker on a prompt to the prompt starting elsewhere."""
        async with (
            self.fleet(2, STUB_IMAGE_S="30", WORKER_STALLED_S=stalled_s) as (fleet, _, api),
            httpx.AsyncClient(timeout=60) as http,
        ):
            prompt = await create_prompt(http, api, SDXL_BASE_TUNE_ID, "p", "")
            line = f"STUB prompt {prompt} pid"
            await poll(lambda: line in fleet.logs())
            fleet.kill_running("prompt", prompt)
            killed_at = time.monotonic()
            await poll(lambda: fleet.logs().count(line) >= 2, limit_s=180)
            return time.monotonic() - killed_at

    async def single_machine_run(self, prompts: int) -> float:
        """The same requests on the single-machine worker (SQLite, in-process runner)."""
        config = WorkerConfig(data_dir=self.folder / f"single-{uuid.uuid4().hex[:8]}")
        worker = Worker(config, engine_factory=lambda: SleepingEngine(0.0))  # type: ignore[arg-type,return-value]
        await worker.start()
        try:
            transport = httpx.ASGITransport(app=worker.app, client=("127.0.0.1", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://w") as http:
                start = time.monotonic()
                await asyncio.gather(
                    *(
                        create_prompt(http, "http://w", SDXL_BASE_TUNE_ID, f"p{i}", "")
                        for i in range(prompts)
                    )
                )
                while len(await worker.store.queued_prompt_ids()) or worker.runner.running:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                return time.monotonic() - start
        finally:
            await worker.stop()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server = pg.server_url()
    reason = pg.unreachable_reason(server)
    if reason:
        raise SystemExit(reason)
    results: dict[str, Any] = {"image_s": args.image_s, "machine": f"{os.cpu_count()} CPUs"}
    with FakeS3() as s3, tempfile.TemporaryDirectory() as tmp:
        bench = Bench(server, s3, Path(tmp))
        rates = {}
        for workers in args.workers:
            prompts = args.per_worker * workers
            seconds = await bench.fleet_run(workers, prompts, args.image_s)
            rates[workers] = prompts / seconds
            ratio = rates[workers] / rates[args.workers[0]]
            print(
                f"{workers} worker(s): {prompts} images in {seconds:.1f} s ="
                f" {rates[workers]:.2f} images/s, x{ratio:.2f} of 1 worker"
                f" (ideal x{workers / args.workers[0]:.0f}, {1 / args.image_s:.1f} images/s each)",
                flush=True,
            )
        results["images_per_s"] = rates
        results["scaling"] = {n: rates[n] / rates[args.workers[0]] for n in rates}
        fleet_s = await bench.fleet_run(1, args.overhead_jobs, 0.0) / args.overhead_jobs
        single_s = await bench.single_machine_run(args.overhead_jobs) / args.overhead_jobs
        results["overhead_ms"] = {"fleet": fleet_s * 1000, "sqlite": single_s * 1000}
        print(
            f"queue overhead per job (0 s images, {args.overhead_jobs} jobs, one worker):"
            f" fleet {fleet_s * 1000:.0f} ms, single machine {single_s * 1000:.0f} ms"
            f" (x{fleet_s / single_s:.1f}; next to a 1 s image: {fleet_s * 100:.1f} %)",
            flush=True,
        )
        if not args.no_kill:
            rerun = await bench.kill_to_rerun(args.stalled_s)
            results["kill_to_rerun_s"] = rerun
            print(
                f"kill -9 to the prompt running elsewhere: {rerun:.1f} s"
                f" (WORKER_STALLED_S={args.stalled_s}, target <= 60 s)",
                flush=True,
            )
    return results


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--per-worker", type=int, default=12, help="images per worker")
    parser.add_argument("--image-s", type=float, default=0.5)
    parser.add_argument("--overhead-jobs", type=int, default=40)
    parser.add_argument("--stalled-s", default=DEFAULT_STALLED_S)
    parser.add_argument("--no-kill", action="store_true", help="skip the kill -9 row")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the S3 fake's request lines
    results = asyncio.run(run(parse(argv)))
    out = os.environ.get("OUT")
    if out:
        Path(out, "fleet.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
