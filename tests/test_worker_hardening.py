"""The worker refuses hostile input with a 4xx and leaves no trace of it (issue 13, items 1-4).

Each case is one that answered 500, committed a half-valid row or froze the worker before:
ids beyond SQLite's integers, a lone surrogate, a null byte in a file path, JSON nested 1000
deep, a prompt built to make the tag regex quadratic, a truncated JPEG, nonsense tune steps.
"""

from __future__ import annotations

import json

import pytest

from backends.base import SDXL_BASE_TUNE_ID
from backends.local.http import MAX_JSON_BYTES
from tests.imagegen import jpeg_bytes, truncated
from tests.test_worker_api import png_bytes
from tests.worker_fixtures import add_trained_tune
from tests.worker_modes import (
    Mode,
    ServedWorker,
    WorkerMaker,
    raw_client,
    row_counts,
    stored_files,
    worker,
    worker_maker,
    worker_mode,
)

pytest.importorskip("torch")

__all__ = ["worker", "worker_maker", "worker_mode"]  # fixtures: each test runs single and fleet

HUGE = "9" * 20
PROMPT = {"text": "a cat", "w": 64, "h": 64, "steps": 2, "num_images": 1}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/tunes/{HUGE}"),
        ("DELETE", f"/tunes/{HUGE}"),
        ("GET", f"/tunes/{HUGE}/prompts"),
        ("GET", f"/prompts/{HUGE}"),
        ("DELETE", f"/prompts/{HUGE}"),
        ("GET", f"/tunes/{SDXL_BASE_TUNE_ID}/prompts/{HUGE}"),
        ("GET", "/tunes/" + "1" * 5000),
        ("GET", "/files/prompts/%00"),
        ("GET", "/files/a%00b.png"),
    ],
)
async def test_ids_beyond_sqlite_and_null_bytes_are_404(
    worker: ServedWorker, method: str, path: str
) -> None:
    async with raw_client(worker) as http:
        response = await http.request(method, path)
    assert response.status_code == 404, response.text
    assert "error" in response.json()


@pytest.mark.parametrize(
    "query",
    ["offset=1e20", f"offset={HUGE}", f"before_id={HUGE}", f"limit={HUGE}", "offset=" + "1" * 5000],
)
async def test_paging_beyond_sqlite_is_400(worker: ServedWorker, query: str) -> None:
    async with raw_client(worker) as http:
        for path in ("/tunes", f"/tunes/{SDXL_BASE_TUNE_ID}/prompts"):
            response = await http.get(f"{path}?{query}")
            assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"text": f"<lora:{HUGE}:1> a cat"}, "unknown LoRA"),
        ({"text": "<lora:{t}:> a cat"}, "strength is missing"),
        ({"text": "a\ud800b"}, "not valid Unicode"),
        ({"negative_prompt": "x\udfffy"}, "not valid Unicode"),
        ({"text": "<lora:a:" * 600}, "longer than"),
        ({"text": "a cat", "seed": 1e300}, "seed"),
        ({"text": "a cat", "steps": HUGE}, "steps"),
        ({"text": "a cat", "cfg_scale": 10**400}, "cfg_scale"),
        ({"text": "a cat", "cfg_scale": "nan"}, "cfg_scale"),
        ({"text": {"nested": "object"}}, "text must be text"),
    ],
)
async def test_bad_prompt_fields_are_422_and_commit_nothing(
    worker: ServedWorker, fields: dict, message: str
) -> None:
    trained = await add_trained_tune(worker)
    if isinstance(fields.get("text"), str):
        fields = {**fields, "text": fields["text"].replace("{t}", str(trained))}
    before = await row_counts(worker)
    async with raw_client(worker) as http:
        response = await http.post(  # json.dumps escapes a surrogate as `\ud800`, as attackers do
            f"/tunes/{SDXL_BASE_TUNE_ID}/prompts",
            content=json.dumps({"prompt": {**PROMPT, **fields}}),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 422, response.text
        assert message in response.json()["error"]
        listed = await http.get(f"/tunes/{SDXL_BASE_TUNE_ID}/prompts")
    assert listed.status_code == 200
    assert await row_counts(worker) == before


async def test_a_lone_surrogate_in_a_form_field_is_refused(worker: ServedWorker) -> None:
    """Forms arrive as bytes: invalid UTF-8 must not become a stored surrogate either."""
    async with raw_client(worker) as http:
        response = await http.post(
            f"/tunes/{SDXL_BASE_TUNE_ID}/prompts",
            content=b"prompt[text]=a%ED%A0%80b&prompt[w]=64&prompt[h]=64",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        listed = await http.get(f"/tunes/{SDXL_BASE_TUNE_ID}/prompts")
    assert response.status_code in (201, 422), response.text
    assert listed.status_code == 200


@pytest.mark.parametrize("worker_mode", [Mode.SINGLE])  # rows an older SQLite worker wrote
async def test_a_lone_surrogate_stored_before_the_checks_no_longer_breaks_listings(
    worker: ServedWorker,
) -> None:
    """A row an older worker committed with a lone surrogate (its JSON escapes it) is read back
    with U+FFFD in its place: the listing the bot pages to resume its jobs answers again.
    One machine only: no older worker wrote PostgreSQL rows, and PostgreSQL's JSON refuses a
    lone surrogate anyway (the fleet's refusal of new ones is the test above, in both modes)."""
    async with raw_client(worker) as http:
        created = await http.post(f"/tunes/{SDXL_BASE_TUNE_ID}/prompts", json={"prompt": PROMPT})
        assert created.status_code == 201, created.text
        prompt_id = created.json()["id"]
        params = {**PROMPT, "text": "a\ud800b", "negative_prompt": ["x\udfffy"]}
        await worker.store.db.execute(  # as the old worker wrote it
            "UPDATE prompts SET params = ? WHERE id = ?", (json.dumps(params), prompt_id)
        )
        await worker.store.db.commit()
        listed = await http.get(f"/tunes/{SDXL_BASE_TUNE_ID}/prompts")
        one = await http.get(f"/prompts/{prompt_id}")
        deleted = await http.delete(f"/prompts/{prompt_id}")
    assert listed.status_code == 200 and one.status_code == 200, listed.text
    [shown] = [p for p in listed.json() if p["id"] == prompt_id]
    assert shown["text"] == one.json()["text"] == "a\ufffdb"
    assert deleted.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000 + b"]" * 1000,
        b'{"prompt": ' + b'{"a": ' * 1000 + b"1" + b"}" * 1001,
        b"\xff\xfe not utf-8",
        b'"just a string"',
    ],
)
async def test_hostile_json_is_422(worker: ServedWorker, body: bytes) -> None:
    async with raw_client(worker) as http:
        response = await http.post(
            f"/tunes/{SDXL_BASE_TUNE_ID}/prompts",
            content=body,
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 422, response.text


async def test_bodies_over_the_caps_are_413(worker: ServedWorker) -> None:
    async with raw_client(worker) as http:
        big_json = await http.post(
            f"/tunes/{SDXL_BASE_TUNE_ID}/prompts",
            content=b'{"prompt": {"text": "' + b"a" * MAX_JSON_BYTES + b'"}}',
            headers={"content-type": "application/json"},
        )
        declared = await http.post(
            "/tunes",
            content=b"",
            headers={"content-type": "multipart/form-data; boundary=x", "content-length": "9" * 12},
        )
    assert big_json.status_code == 413
    assert declared.status_code == 413
    assert await row_counts(worker) == (0, 0)


def tune_form(**fields: str) -> dict[str, str]:
    values = {"title": "t-1", "name": "man", **fields}
    return {f"tune[{key}]": value for key, value in values.items()}


@pytest.mark.parametrize(
    ("fields", "photo", "message"),
    [
        ({}, truncated(jpeg_bytes(1024, 1024)), "not a readable image"),
        ({"steps": "-5"}, None, "steps must be between"),
        ({"steps": "1e9"}, None, "steps must be between"),
        ({"steps": "1e300"}, None, "steps must be"),
        ({"face_crop": "maybe"}, None, "face_crop must be true or false"),
    ],
)
async def test_bad_tunes_are_refused_before_anything_is_written(
    worker: ServedWorker, fields: dict[str, str], photo: bytes | None, message: str
) -> None:
    photos = [png_bytes(), photo or png_bytes()]
    async with raw_client(worker) as http:
        response = await http.post(
            "/tunes",
            data=tune_form(**fields),
            files=[("tune[images][]", (f"{i}.jpg", p, "image/jpeg")) for i, p in enumerate(photos)],
        )
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]
    assert await row_counts(worker) == (0, 0)
    assert await stored_files(worker) == []


async def test_a_request_that_fails_after_committing_takes_its_rows_back(
    worker_maker: WorkerMaker,
) -> None:
    """A public URL from an environment with invalid UTF-8 (Python hands it over as a lone
    surrogate) makes every answer unencodable after the row is committed: the client gets a
    500, and the row and its photos are gone again, so no job runs that nobody knows of."""
    async with (
        worker_maker.started(public_url="http://worker-\udcff") as worker,
        raw_client(worker) as http,
    ):
        prompt = await http.post(f"/tunes/{SDXL_BASE_TUNE_ID}/prompts", json=PROMPT)
        tune = await http.post(
            "/tunes",
            data=tune_form(),
            files=[("tune[images][]", ("a.png", png_bytes(), "image/png"))],
        )
        assert prompt.status_code == 500 and tune.status_code == 500
        assert await row_counts(worker) == (0, 0)
        assert await stored_files(worker) == []
