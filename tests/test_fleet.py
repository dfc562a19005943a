"""The worker fleet end to end (issue #16): real PostgreSQL and procrastinate, S3 through the
moto fake, GPU worker subprocesses with a sleeping GPU (`tests.fleet_stub_worker`), two API
replicas. Only the GPU is a stand-in: scheduling, rescue and storage are the real code."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backends.base import SDXL_BASE_TUNE_ID
from backends.local.fleet_jobs import Task
from backends.local.migrate import migrate
from tests.fakes.s3 import FakeS3
from tests.fleet import (
    Fleet,
    create_prompt,
    create_tune,
    pack_prompt_ids,
    run_pack_on_new_tune,
)
from tests.worker_fixtures import CallbackSink, run_uvicorn, until

pytestmark = pytest.mark.slow


@pytest.fixture
async def fleet(pg_url: str, fake_s3: FakeS3, s3_bucket: str, tmp_path: Path) -> Iterator[Fleet]:
    await migrate(pg_url)
    fleet = Fleet(pg_url, fake_s3, s3_bucket, tmp_path, STUB_IMAGE_S="0.2", STUB_STEP_S="0.1")
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
async def sink() -> AsyncIterator[tuple[CallbackSink, str]]:
    callbacks = CallbackSink()
    async with run_uvicorn(callbacks.app) as url:
        yield callbacks, f"{url}/hook"


def delivered(sink: CallbackSink) -> collections.Counter[tuple[str, int]]:
    return collections.Counter((kind, body[kind]["id"]) for body in sink.received for kind in body)


def row_state(url: str, table: str, row_id: int) -> tuple[str, str | None]:
    error = "error" if table == "tunes" else "user_error"
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT state, {error} FROM {table} WHERE id = %s", (row_id,))
        return row.fetchone()  # type: ignore[return-value]


async def test_thirty_prompts_and_three_tunes_run_once_each_with_one_callback(
    fleet: Fleet, sink: tuple[CallbackSink, str]
) -> None:
    callbacks, hook = sink
    for _ in range(3):
        fleet.start_worker()
    async with fleet.api(replicas=2) as apis, httpx.AsyncClient(timeout=30) as http:
        tunes = await asyncio.gather(
            *(create_tune(http, apis[i % 2], f"title-{i}", hook) for i in range(3))
        )
        prompts = await asyncio.gather(
            *(
                create_prompt(http, apis[i % 2], SDXL_BASE_TUNE_ID, f"photo {i}", hook)
                for i in range(30)
            )
        )

        async def all_called_back() -> bool:
            return len(callbacks.received) >= 33

        await until(all_called_back, "33 callbacks", 90)
        on_tunes = [
            await create_prompt(http, apis[i % 2], tune, "ohwx man", hook, images=2)
            for i, tune in enumerate(tunes)
        ]

        async def tuned_called_back() -> bool:
            return len(callbacks.received) >= 36

        await until(tuned_called_back, "the prompts on the trained tunes", 60)
        await asyncio.sleep(1.5)  # time for a duplicate to show up, were there one
        first = callbacks.received[-1]["prompt"]
        image = await http.get(first["images"][0], follow_redirects=True)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert len(first["images"]) == 2
    expected = [("tune", t) for t in tunes] + [("prompt", p) for p in prompts + on_tunes]
    assert delivered(callbacks) == collections.Counter(expected)  # each exactly once
    logs = fleet.logs()
    for prompt in prompts + on_tunes:
        assert logs.count(f"STUB prompt {prompt} pid") == 1
    for tune in tunes:
        assert logs.count(f"STUB tune {tune} pid") == 1
    assert len({line.split(" pid ")[1] for line in logs.splitlines() if "STUB" in line}) == 3
    assert all(job["status"] == "succeeded" for job in fleet.jobs(Task.PROMPT))
    assert all(job["status"] == "succeeded" for job in fleet.jobs(Task.CALLBACK))


@pytest.mark.parametrize("kind", ["prompt", "tune"])
async def test_a_job_whose_worker_is_killed_completes_on_another(
    fleet: Fleet, sink: tuple[CallbackSink, str], kind: str
) -> None:
    callbacks, hook = sink
    slow = {"STUB_IMAGE_S": "2", "STUB_STEP_S": "0.5", "STUB_STEPS": "8"}
    for _ in range(2):
        fleet.start_worker(**slow)
    async with fleet.api(replicas=1) as (api,), httpx.AsyncClient(timeout=30) as http:
        if kind == "tune":
            row_id = await create_tune(http, api, "doomed", hook)
        else:
            row_id = await create_prompt(http, api, SDXL_BASE_TUNE_ID, "p", hook, images=3)
        task = Task.TUNE if kind == "tune" else Task.PROMPT

        async def started() -> bool:
            return f"STUB {kind} {row_id} pid" in fleet.logs()

        await until(started, f"the {kind} to start", 60)
        killed = fleet.kill_running(kind, row_id)
        loop = asyncio.get_running_loop()
        at = loop.time()

        async def called_back() -> bool:
            return bool(callbacks.received)

        await until(called_back, f"the {kind} to finish elsewhere", 60)
        rerun_s = loop.time() - at
    runs = [line for line in fleet.logs().splitlines() if f"STUB {kind} {row_id} pid" in line]
    pids = {int(line.rsplit(" ", 1)[1]) for line in runs}
    assert len(runs) == 2 and len(pids) == 2 and killed in pids
    assert delivered(callbacks) == collections.Counter([(kind, row_id)])
    assert callbacks.received[0][kind]["status" if kind == "prompt" else "id"] is not None
    assert row_state(fleet.database_url, f"{kind}s", row_id)[0] == "done"
    assert [job["attempts"] for job in fleet.jobs(task)] == [2]  # one died, one succeeded
    assert rerun_s < 40  # WORKER_STALLED_S=4: noticed within a few rescue rounds


async def test_prompts_overtake_queued_trainings_and_run_between_training_steps(
    fleet: Fleet, sink: tuple[CallbackSink, str]
) -> None:
    callbacks, hook = sink
    fleet.start_worker(STUB_STEP_S="0.3", STUB_STEPS="12")
    async with fleet.api(replicas=1) as (api,), httpx.AsyncClient(timeout=30) as http:
        tunes = [await create_tune(http, api, f"t{i}", hook) for i in range(3)]

        async def training() -> bool:
            return "STUB tune" in fleet.logs()

        await until(training, "the first training to start", 60)
        prompts = [
            await create_prompt(http, api, SDXL_BASE_TUNE_ID, f"p{i}", hook) for i in range(3)
        ]

        async def all_done() -> bool:
            return len(callbacks.received) >= 6

        await until(all_done, "every job", 60)
    called_back = [(kind, body[kind]["id"]) for body in callbacks.received for kind in body]
    assert called_back[:4] == [*(("prompt", p) for p in prompts), ("tune", tunes[0])]
    order = [line.split(" pid ")[0] for line in fleet.logs().splitlines() if "STUB" in line]
    assert order == [
        f"STUB tune {tunes[0]}",
        *(f"STUB prompt {p}" for p in prompts),
        f"STUB tune {tunes[1]}",
        f"STUB tune {tunes[2]}",
    ]


async def test_a_hung_gpu_ends_its_worker_and_a_job_that_keeps_killing_fails(
    fleet: Fleet, sink: tuple[CallbackSink, str]
) -> None:
    callbacks, hook = sink
    workers = [fleet.start_worker(WORKER_HUNG_S="2", WORKER_MAX_TRIES="2") for _ in range(3)]
    async with fleet.api(replicas=1) as (api,), httpx.AsyncClient(timeout=30) as http:
        deadly = await create_prompt(http, api, SDXL_BASE_TUNE_ID, "hang here", hook)

        async def failed() -> bool:
            return bool(callbacks.received)

        await until(failed, "the deadly prompt to fail", 60)
        fine = await create_prompt(http, api, SDXL_BASE_TUNE_ID, "fine", hook)

        async def fine_done() -> bool:
            return len(callbacks.received) >= 2

        await until(fine_done, "a prompt after it", 30)
    assert [w.poll() for w in workers].count(70) == 2  # HUNG_EXIT_STATUS, twice
    state, error = row_state(fleet.database_url, "prompts", deadly)
    assert state == "failed" and error is not None and "stopped 2 GPU workers" in error
    assert callbacks.received[0]["prompt"]["id"] == deadly
    assert callbacks.received[1]["prompt"]["id"] == fine
    assert row_state(fleet.database_url, "prompts", fine)[0] == "done"


async def test_a_refused_callback_is_sent_again_with_backoff(fleet: Fleet) -> None:
    posts: list[int] = []

    async def hook(request: Request) -> JSONResponse:
        posts.append((await request.json())["prompt"]["id"])
        return JSONResponse({}, status_code=503 if len(posts) == 1 else 200)

    fleet.start_worker()
    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    async with (
        run_uvicorn(app) as sink_url,
        fleet.api(replicas=1) as (api,),
        httpx.AsyncClient(timeout=30) as http,
    ):
        prompt = await create_prompt(http, api, SDXL_BASE_TUNE_ID, "p", f"{sink_url}/hook")

        async def accepted() -> bool:
            return len(posts) >= 2

        await until(accepted, "the callback's second try", 60)
    assert posts == [prompt, prompt]
    assert [(job["status"], job["attempts"]) for job in fleet.jobs(Task.CALLBACK)] == [
        ("succeeded", 2)
    ]


async def test_a_stopped_worker_hands_its_job_back_and_exits_cleanly(
    fleet: Fleet, sink: tuple[CallbackSink, str]
) -> None:
    callbacks, hook = sink
    first = fleet.start_worker(STUB_IMAGE_S="3")
    async with fleet.api(replicas=1) as (api,), httpx.AsyncClient(timeout=30) as http:
        prompt = await create_prompt(http, api, SDXL_BASE_TUNE_ID, "p", hook, images=2)

        async def started() -> bool:
            return f"STUB prompt {prompt} pid {first.pid}" in fleet.logs()

        await until(started, "the prompt to start", 60)
        first.terminate()  # SIGTERM, as systemd and docker stop
        status = await asyncio.to_thread(first.wait, 30)
        assert row_state(fleet.database_url, "prompts", prompt)[0] == "queued"
        second = fleet.start_worker(STUB_IMAGE_S="0.1")

        async def called_back() -> bool:
            return bool(callbacks.received)

        await until(called_back, "the prompt to finish on the next worker", 60)
    assert status == 0
    assert f"STUB prompt {prompt} pid {second.pid}" in fleet.logs()
    assert delivered(callbacks) == collections.Counter([("prompt", prompt)])
    assert [job["status"] for job in fleet.jobs(Task.PROMPT)] == ["succeeded", "succeeded"]


async def test_a_pack_on_a_new_tune_runs_as_one_unit_on_one_worker_and_calls_back_once(
    fleet: Fleet, sink: tuple[CallbackSink, str]
) -> None:
    callbacks, hook = sink
    for _ in range(3):
        fleet.start_worker()
    async with fleet.api(replicas=2) as apis, httpx.AsyncClient(timeout=30) as http:
        wanted = await pack_prompt_ids(http, apis[0], 4)
        made = await run_pack_on_new_tune(
            http,
            apis[0],
            "pack",
            wanted,
            hook,
            **{"tune[callback]": hook, "tune[prompt_attributes][num_images]": "1"},
        )
        run = [p["id"] for p in made["prompts"]]

        async def trained() -> bool:
            return bool(callbacks.received)

        await until(trained, "the training", 60)
        singles = [
            await create_prompt(http, apis[i % 2], SDXL_BASE_TUNE_ID, f"single {i}", "")
            for i in range(4)
        ]

        async def run_called_back() -> bool:
            return any(isinstance(body, list) for body in callbacks.received)

        await until(run_called_back, "the run's prompts_callback", 90)
        await asyncio.sleep(1.5)  # time for a duplicate to show up, were there one
        shown = [(await http.get(f"{apis[1]}/prompts/{p}")).json() for p in singles]
    [together] = [body for body in callbacks.received if isinstance(body, list)]
    assert [p["id"] for p in together] == run
    assert all(p["status"] == "done" and len(p["images"]) == 1 for p in together)
    assert {p["status"] for p in shown} == {"done"}
    lines = [line for line in fleet.logs().splitlines() if line.startswith("STUB prompt")]
    made_by = {int(line.split()[2]): line.rsplit(" ", 1)[1] for line in lines}
    assert len({made_by[p] for p in run}) == 1  # the whole run on one GPU: one fetch, one bind
    assert [job["status"] for job in fleet.jobs(Task.RUN)] == ["succeeded"]
    assert not [job for job in fleet.jobs(Task.PROMPT) if job["row_id"] in run]


async def test_best_of_makes_more_images_on_the_gpu_worker_and_keeps_the_best(
    fleet: Fleet,
) -> None:
    fleet.start_worker(OVERGENERATE="2", STUB_IMAGE_S="0.05")
    async with fleet.api(replicas=1) as (api,), httpx.AsyncClient(timeout=30) as http:
        prompt = await create_prompt(http, api, SDXL_BASE_TUNE_ID, "best of", "", images=2)

        async def done() -> dict[str, object] | None:
            shown = (await http.get(f"{api}/prompts/{prompt}")).json()
            return shown if shown["status"] in ("done", "failed") else None

        shown = await until(done, "the best-of prompt", 60)
        images = [(await http.get(url, follow_redirects=True)).content for url in shown["images"]]
    assert shown["status"] == "done" and shown["generated_images"] == 4
    assert len(images) == 2 and all(image.startswith(b"\x89PNG") for image in images)
    scores = shown["scores"]
    assert len(scores) == 2 and scores[0]["score"] >= scores[1]["score"]
    assert {s["seed"] for s in scores} <= {shown["seed"] + j for j in range(4)}
    assert fleet.logs().count(f"STUB prompt {prompt} pid") == 2  # two rounds of two


@pytest.mark.parametrize("kind", ["prompt", "tune"])
async def test_delete_stops_a_running_job_frees_the_gpu_and_sends_nothing(
    fleet: Fleet, sink: tuple[CallbackSink, str], kind: str
) -> None:
    callbacks, hook = sink
    fleet.start_worker(STUB_IMAGE_S="3", STUB_STEP_S="0.5", STUB_STEPS="40")
    async with fleet.api(replicas=2) as apis, httpx.AsyncClient(timeout=30) as http:
        if kind == "tune":
            row_id = await create_tune(http, apis[0], "deleted", hook)
        else:
            row_id = await create_prompt(http, apis[0], SDXL_BASE_TUNE_ID, "p", hook, images=8)

        async def started() -> bool:
            return f"STUB {kind} {row_id} pid" in fleet.logs()

        await until(started, f"the {kind} to start", 60)
        path = f"tunes/{row_id}" if kind == "tune" else f"prompts/{row_id}"
        assert (await http.delete(f"{apis[1]}/{path}")).status_code == 200  # another replica

        async def stopped() -> bool:  # logged only when the job aborts on its deleted row
            return f"{kind} {row_id}: deleted while running, stopped" in fleet.logs()

        await until(stopped, f"the deleted {kind} to stop", 30)
        after = await create_prompt(http, apis[0], SDXL_BASE_TUNE_ID, "next", hook)

        async def next_done() -> bool:
            return bool(callbacks.received)

        await until(next_done, "the next prompt", 60)
        await asyncio.sleep(1.5)  # time for a callback of the deleted job, were there one
    assert delivered(callbacks) == collections.Counter([("prompt", after)])
    assert f"STUB prompt {after} pid" in fleet.logs()  # the GPU went on to the next job
    task = Task.TUNE if kind == "tune" else Task.PROMPT
    assert [job["status"] for job in fleet.jobs(task) if job["row_id"] == row_id] == ["succeeded"]


async def test_a_training_killed_after_a_checkpoint_resumes_from_it_on_another_worker(
    fleet: Fleet, sink: tuple[CallbackSink, str]
) -> None:
    callbacks, hook = sink
    steps = {"STUB_STEP_S": "0.3", "STUB_STEPS": "30", "STUB_CHECKPOINT_STEPS": "5"}
    for _ in range(2):
        fleet.start_worker(**steps)
    async with fleet.api(replicas=1) as (api,), httpx.AsyncClient(timeout=30) as http:
        tune = await create_tune(http, api, "resumed", hook)

        async def checkpointed() -> bool:  # printed once the copy is in storage
            return f"STUB tune {tune} checkpoint at step 10" in fleet.logs()

        await until(checkpointed, "the second checkpoint", 60)
        killed = fleet.kill_running("tune", tune)

        async def trained() -> bool:
            return bool(callbacks.received)

        await until(trained, "the training to finish elsewhere", 90)
    logs = fleet.logs()
    [resumed] = [line for line in logs.splitlines() if f"STUB tune {tune} resumes at" in line]
    step = int(resumed.rsplit(" ", 1)[1])
    assert step >= 10 and step % 5 == 0  # the last checkpoint before the kill, not step 0
    runs = [line for line in logs.splitlines() if f"STUB tune {tune} pid" in line]
    pids = {int(line.rsplit(" ", 1)[1]) for line in runs}
    assert len(runs) == 2 and len(pids) == 2 and killed in pids  # the resume: the other one
    assert f"tune {tune}: checkpoint fetched from storage" in logs
    assert delivered(callbacks) == collections.Counter([("tune", tune)])
    assert row_state(fleet.database_url, "tunes", tune)[0] == "done"


async def test_a_run_whose_worker_is_killed_finishes_on_another_with_one_callback(
    fleet: Fleet, sink: tuple[CallbackSink, str]
) -> None:
    callbacks, hook = sink
    for _ in range(2):
        fleet.start_worker(STUB_IMAGE_S="1")
    async with fleet.api(replicas=1) as (api,), httpx.AsyncClient(timeout=30) as http:
        tune = await create_tune(http, api, "trained", "")

        async def is_trained() -> bool:
            return (await http.get(f"{api}/tunes/{tune}")).json()["trained_at"] is not None

        await until(is_trained, "the training", 60)
        wanted = await pack_prompt_ids(http, api, 4)
        body = {
            "tune_ids": [tune],
            "prompt_ids": wanted,
            "prompts_callback": hook,
            "prompt_attributes": {"num_images": 1},
        }
        made = await http.post(f"{api}/p/corporate-headshots/tunes", json={"tune": body})
        assert made.status_code == 201, made.text
        run = [p["id"] for p in made.json()["prompts"]]

        async def second_started() -> bool:
            return f"STUB prompt {run[1]} pid" in fleet.logs()

        await until(second_started, "the run's second prompt", 60)
        killed = fleet.kill_running("prompt", run[1])

        async def called_back() -> bool:
            return bool(callbacks.received)

        await until(called_back, "the run to finish on the other worker", 90)
        await asyncio.sleep(1.5)  # time for a duplicate to show up, were there one
    [together] = callbacks.received
    assert [p["id"] for p in together] == run and {p["status"] for p in together} == {"done"}
    lines = [line for line in fleet.logs().splitlines() if line.startswith("STUB prompt")]
    after_kill = [line for line in lines if f"STUB prompt {run[3]} pid" in line]
    assert after_kill and all(not line.endswith(f" {killed}") for line in after_kill)
    assert [(job["status"], job["attempts"]) for job in fleet.jobs(Task.RUN)] == [("succeeded", 2)]
