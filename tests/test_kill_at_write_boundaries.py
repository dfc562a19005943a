"""kill -9 at each write boundary (issue 13, item 7): the worker runs as a real process and the
test fault hook (`WORKER_FAULT_AT=kill:<point>`, backends/local/faults.py) SIGKILLs it at a named
point. After a plain restart every job ends done, failed with a reason, or never existed, none
stays stuck, and no file is left that no row names (what the crash left is swept at start).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backends.local.faults import FAULT_ENV, FaultPoint
from tests.fakes.threaded_server import free_port
from tests.imagegen import jpeg_bytes
from tests.processes import TINY_ON_CPU, BotProcess, until, wait_for_worker
from tests.test_shutdown import base_env

pytest.importorskip("torch")

KEY = "kill-test-key"
BASE_TUNE = 666678
FINAL = {"succeeded", "failed"}


class WorkerRun:
    """One worker process on `port` over the data folder of `tmp_path`, and a client for it."""

    def __init__(self, tmp_path: Path, port: int, fault: str | None) -> None:
        env = base_env(
            tmp_path,
            **TINY_ON_CPU,
            WORKER_API_KEY=KEY,
            WORKER_TRAIN_STEPS="4",
            WORKER_TRAIN_RESOLUTION="64",
            WORKER_TRAIN_RANK="4",
            WORKER_TRAIN_CHECKPOINT_STEPS="2",
        )
        if fault is not None:
            env[FAULT_ENV] = fault
        self.process = BotProcess(["worker", "--port", str(port)], env, tmp_path)
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=30,
        )
        wait_for_worker(self.http)

    def died(self) -> bool:
        return self.process.popen.poll() is not None


@pytest.fixture
def runs() -> Iterator[list[WorkerRun]]:
    started: list[WorkerRun] = []
    yield started
    for run in started:
        run.process.kill()
        run.http.close()


def post_tune(http: httpx.Client) -> None:
    photos = [("tune[images][]", (f"{i}.jpg", jpeg_bytes(seed=i), "image/jpeg")) for i in range(2)]
    form = {"tune[title]": "kill-1", "tune[name]": "man"}
    with contextlib.suppress(httpx.TransportError):  # killed before answering, or not
        http.post("/tunes", data=form, files=photos)


def post_prompt(http: httpx.Client) -> None:
    body = {"prompt": {"text": "portrait", "num_images": 1, "steps": 2, "w": 64, "h": 64,
                       "super_resolution": False, "inpaint_faces": False}}  # fmt: skip
    assert http.post(f"/tunes/{BASE_TUNE}/prompts", json=body).status_code == 201


CASES: dict[FaultPoint, Callable[[httpx.Client], None]] = {
    FaultPoint.TUNE_PHOTOS_WRITTEN: post_tune,
    FaultPoint.TUNE_INSERTED: post_tune,
    FaultPoint.TRAINING_CHECKPOINTED: post_tune,
    FaultPoint.PROMPT_GENERATED: post_prompt,
}


def jobs(http: httpx.Client) -> list[dict[str, Any]]:
    tunes = http.get("/tunes").json()
    prompts = http.get(f"/tunes/{BASE_TUNE}/prompts").json()
    for tune in tunes:
        prompts += http.get(f"/tunes/{tune['id']}/prompts").json()
    return tunes + prompts


def ended(job: dict[str, Any]) -> bool:
    """Done (a trained tune, a prompt with images) or failed with a reason."""
    if job.get("user_error") or job.get("error"):
        return True
    return bool(job.get("trained_at") or job.get("images"))


def all_ended(http: httpx.Client) -> list[dict[str, Any]] | None:
    """Every job, once there are some and all have ended."""
    found = jobs(http)
    return found if found and all(ended(j) for j in found) else None


def named_files(all_jobs: list[dict[str, Any]]) -> set[str]:
    urls = [u for job in all_jobs for u in job.get("orig_images", []) + job.get("images", [])]
    return {u.split("/files/", 1)[1] for u in urls}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(CASES), ids=str)
def test_kill_9_at_a_write_boundary_leaves_no_stuck_job_and_no_orphan(
    point: FaultPoint, tmp_path: Path, runs: list[WorkerRun]
) -> None:
    port = free_port()
    first = WorkerRun(tmp_path, port, fault=f"kill:{point}")
    runs.append(first)
    CASES[point](first.http)
    until(first.died, f"the worker to kill itself at {point}", timeout=240)
    assert first.process.popen.returncode == -9, first.process.output

    second = WorkerRun(tmp_path, port, fault=None)
    runs.append(second)
    if point == FaultPoint.TUNE_PHOTOS_WRITTEN:  # no row was committed: no tune, no photos
        all_jobs = jobs(second.http)
        assert all_jobs == []
        assert "orphan file(s) left by an interrupted write" in second.process.output
    else:
        all_jobs = until(lambda: all_ended(second.http), "every job to end", timeout=300)
    files = tmp_path / "data" / "worker" / "files"
    on_disk = {p.relative_to(files).as_posix() for p in files.rglob("*") if p.is_file()}
    assert on_disk == named_files(all_jobs)
