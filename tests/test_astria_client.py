"""The real AstriaClient against the fake Astria server over real HTTP.

Nothing of ours is mocked: the only stand-in is the injected `sleep`, which records the
backoff the client asked for instead of waiting it out.
"""

from __future__ import annotations

import asyncio
import email.utils
import io
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from PIL import Image

from backends.astria import AstriaClient
from backends.base import (
    AuthError,
    BackendError,
    NotFoundError,
    PromptRequest,
    RateLimitError,
    ServerError,
    TrainingImage,
    TuneRequest,
    ValidationError,
)
from tests.fakes.astria_server import FakeAstria
from tests.fakes.threaded_server import free_port

KEY = "sd_SeCrEt_k3y_do_not_log"
SDXL = 666678


@pytest.fixture
def fake() -> Iterator[FakeAstria]:
    with FakeAstria(api_key=KEY, train_seconds=0.2, prompt_seconds=0.1) as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
async def client(fake: FakeAstria, sleeps: list[float]) -> AsyncIterator[AstriaClient]:
    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with AstriaClient(KEY, fake.url, timeout=5.0, sleep=record_sleep) as c:
        yield c


def photo(n: int) -> TrainingImage:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (n * 40, 10, 200)).save(buffer, format="JPEG")
    return TrainingImage(f"photo{n}.jpg", buffer.getvalue(), "image/jpeg")


def tune_request(title: str = "6f1c2a9e-uuid", **kw) -> TuneRequest:
    return TuneRequest(title=title, name="man", images=[photo(1), photo(2)], **kw)


async def wait_for(check, limit_s: float = 5.0):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.03)
    raise AssertionError("condition not met in time")


async def trained_tune(client: AstriaClient, title: str = "t-1"):
    tune = await client.create_tune(tune_request(title))

    async def done():
        t = await client.get_tune(tune.id)
        return t if t.done else None

    return await wait_for(done)


# -- tunes ---------------------------------------------------------------------------------


async def test_create_tune_sends_documented_multipart(client: AstriaClient, fake: FakeAstria):
    images = [photo(1), photo(2), TrainingImage("p3.png", b"\x89PNG-bytes", "image/png")]
    request = TuneRequest(
        title="a1b2-uuid",
        name="woman",
        images=images,
        steps=500,
        face_crop=False,
        callback="https://bot.example/hooks/astria?tune=1&secret=x",
    )
    tune = await client.create_tune(request)

    [rec] = fake.find_requests("POST", "/tunes")
    assert rec.headers["authorization"] == f"Bearer {KEY}"
    assert rec.headers["accept"] == "application/json"
    assert rec.headers["content-type"].startswith("multipart/form-data")
    assert rec.form == {
        "tune[title]": ["a1b2-uuid"],
        "tune[name]": ["woman"],
        "tune[token]": ["ohwx"],
        "tune[base_tune_id]": ["666678"],
        "tune[model_type]": ["pti"],
        "tune[steps]": ["500"],
        "tune[face_crop]": ["false"],
        "tune[callback]": ["https://bot.example/hooks/astria?tune=1&secret=x"],
    }
    assert rec.files == [("tune[images][]", i.filename, i.content) for i in images]
    assert rec.file_content_types == ["image/jpeg", "image/jpeg", "image/png"]

    assert tune.id in fake.tunes
    assert (tune.title, tune.name, tune.token) == ("a1b2-uuid", "woman", "ohwx")
    assert tune.trained_at is None and not tune.done
    assert tune.eta is not None and tune.eta.tzinfo is not None
    assert tune.raw["base_tune_id"] == SDXL and tune.raw["is_api"] is True


async def test_create_tune_omits_none_fields(client: AstriaClient, fake: FakeAstria):
    await client.create_tune(tune_request(face_crop=None, steps=None))
    [rec] = fake.find_requests("POST", "/tunes")
    assert "tune[steps]" not in rec.form
    assert "tune[face_crop]" not in rec.form
    assert "tune[callback]" not in rec.form


async def test_title_is_the_idempotency_key(client: AstriaClient, fake: FakeAstria):
    first = await client.create_tune(tune_request("same-uuid"))
    second = await client.create_tune(tune_request("same-uuid"))
    assert second.id == first.id
    assert len(fake.tunes) == 1
    assert len(fake.find_requests("POST", "/tunes")) == 2


async def test_tune_trains_and_callback_fires_once(client: AstriaClient, fake: FakeAstria):
    request = tune_request(callback=f"{fake.url}/hooks/tune")
    tune = await client.create_tune(request)
    done = await trained_tune(client, request.title)
    assert done.id == tune.id
    assert done.trained_at is not None and done.started_training_at is not None
    assert done.started_training_at <= done.trained_at
    assert (done.trained_at - datetime.now(UTC)).total_seconds() < 5
    assert done.raw["expires_at"] is not None
    await asyncio.sleep(0.2)
    assert [url for url, _ in fake.callbacks_sent] == [f"{fake.url}/hooks/tune"]
    assert fake.callbacks_sent[0][1]["tune"]["id"] == tune.id


async def test_list_tunes_follows_before_id_pages(client: AstriaClient, fake: FakeAstria):
    for n in range(250):
        fake.add_tune(f"bulk-{n}")
    tunes = await client.list_tunes()
    assert len(tunes) == 250
    assert len({t.id for t in tunes}) == 250
    assert [t.id for t in tunes] == sorted(fake.tunes, reverse=True)
    pages = fake.find_requests("GET", "/tunes")
    assert [r.query for r in pages] == [
        {"limit": "120"},
        {"limit": "120", "before_id": str(tunes[119].id)},
        {"limit": "120", "before_id": str(tunes[239].id)},
    ]


async def test_list_tunes_empty_and_exact_page(client: AstriaClient, fake: FakeAstria):
    assert await client.list_tunes() == []
    for n in range(120):
        fake.add_tune(f"bulk-{n}")
    assert len(await client.list_tunes()) == 120
    assert len(fake.find_requests("GET", "/tunes")) == 3  # empty, full page, empty page


async def test_delete_tune(client: AstriaClient, fake: FakeAstria):
    tune = await client.create_tune(tune_request())
    await client.delete_tune(tune.id)
    assert tune.id not in fake.tunes
    with pytest.raises(NotFoundError):
        await client.get_tune(tune.id)
    with pytest.raises(NotFoundError):
        await client.delete_tune(tune.id)


# -- prompts -------------------------------------------------------------------------------


async def test_prompt_with_all_fields_completes_and_downloads(
    client: AstriaClient, fake: FakeAstria
):
    tune = await client.create_tune(tune_request())  # prompt queues until the tune is trained
    request = PromptRequest(
        text=f"<lora:{tune.id}:0.8> ohwx man as an astronaut",
        negative_prompt="blurry, lowres",
        num_images=2,
        seed=42,
        steps=30,
        cfg_scale=6.5,
        w=1024,
        h=1360,
        scheduler="dpm++2m_karras",
        super_resolution=True,
        inpaint_faces=True,
        face_correct=False,
        hires_fix=True,
        callback=f"{fake.url}/hooks/prompt?id=9",
    )
    prompt = await client.create_prompt(SDXL, request)

    [rec] = fake.find_requests("POST", f"/tunes/{SDXL}/prompts")
    assert rec.headers["content-type"] == "application/x-www-form-urlencoded"
    assert rec.form == {
        "prompt[text]": [f"<lora:{tune.id}:0.8> ohwx man as an astronaut"],
        "prompt[negative_prompt]": ["blurry, lowres"],
        "prompt[num_images]": ["2"],
        "prompt[seed]": ["42"],
        "prompt[steps]": ["30"],
        "prompt[cfg_scale]": ["6.5"],
        "prompt[w]": ["1024"],
        "prompt[h]": ["1360"],
        "prompt[scheduler]": ["dpm++2m_karras"],
        "prompt[super_resolution]": ["true"],
        "prompt[inpaint_faces]": ["true"],
        "prompt[face_correct]": ["false"],
        "prompt[hires_fix]": ["true"],
        "prompt[callback]": [f"{fake.url}/hooks/prompt?id=9"],
    }
    assert prompt.tune_id == SDXL and prompt.images == () and not prompt.done
    assert prompt.raw["cfg_scale"] == "6.5"

    async def finished():
        p = await client.get_prompt(prompt.id, SDXL)
        return p if p.done else None

    done = await wait_for(finished)
    assert fake.tunes[tune.id]["trained_at"] is not None
    assert len(done.images) == 2 and done.trained_at is not None
    assert (await client.get_prompt(prompt.id)).images == done.images  # via /prompts/:id

    first = await client.download(done.images[0])
    second = await client.download(done.images[1])
    with Image.open(io.BytesIO(first)) as image:
        assert image.format == "PNG" and image.size == (64, 64)
        colour_one = image.getpixel((0, 0))
    with Image.open(io.BytesIO(second)) as image:
        assert image.getpixel((0, 0)) != colour_one
    await asyncio.sleep(0.1)
    assert [u for u, _ in fake.callbacks_sent if "prompt" in u] == [f"{fake.url}/hooks/prompt?id=9"]


async def test_prompt_defaults_omit_none(client: AstriaClient, fake: FakeAstria):
    tune = fake.add_tune("ready")
    await client.create_prompt(SDXL, PromptRequest(text=f"<lora:{tune['id']}:1> ohwx man"))
    [rec] = fake.find_requests("POST", "/tunes/")
    for absent in ("seed", "steps", "cfg_scale", "w", "h", "callback"):
        assert f"prompt[{absent}]" not in rec.form
    assert rec.form["prompt[num_images]"] == ["4"]
    assert rec.form["prompt[scheduler]"] == ["euler_a"]
    assert rec.form["prompt[negative_prompt]"] == [""]


async def test_prompt_user_error(client: AstriaClient, fake: FakeAstria):
    tune = fake.add_tune("ready")
    fake.fail_prompts_with("NSFW content detected")
    prompt = await client.create_prompt(SDXL, PromptRequest(text=f"<lora:{tune['id']}:1> x"))

    async def settled():
        p = await client.get_prompt(prompt.id)
        return p if p.failed else None

    failed = await wait_for(settled)
    assert failed.user_error == "NSFW content detected"
    assert failed.images == () and not failed.done


async def test_list_and_delete_prompts(client: AstriaClient, fake: FakeAstria):
    tune = fake.add_tune("ready")
    ids = []
    for seed in range(3):
        request = PromptRequest(text=f"<lora:{tune['id']}:1> ohwx man", seed=seed)
        ids.append((await client.create_prompt(SDXL, request)).id)
    listed = await client.list_prompts(SDXL)
    assert [p.id for p in listed] == sorted(ids, reverse=True)
    assert all(p.tune_id == SDXL for p in listed)

    await client.delete_prompt(ids[0])
    assert ids[0] not in fake.prompts
    [rec] = fake.find_requests("DELETE")
    assert rec.path == f"/prompts/{ids[0]}"
    with pytest.raises(NotFoundError):
        await client.get_prompt(ids[0])
    assert {p.id for p in await client.list_prompts(SDXL)} == set(ids[1:])


async def test_create_prompt_accepts_list_and_object_images(client: AstriaClient, fake: FakeAstria):
    crafted = {
        "id": 77,
        "tune_id": SDXL,
        "text": "x",
        "cfg_scale": "3.0",
        "images": ["https://s3.example/a.png", {"url": "https://s3.example/b.png", "nsfw": False}],
        "trained_at": "2024-09-29T16:16:06.539Z",
        "extra_field": {"kept": True},
    }
    fake.fail_next("POST", f"/tunes/{SDXL}/prompts", 200, body=[crafted])
    prompt = await client.create_prompt(SDXL, PromptRequest(text="x"))
    assert prompt.id == 77
    assert prompt.images == ("https://s3.example/a.png", "https://s3.example/b.png")
    assert prompt.trained_at == datetime(2024, 9, 29, 16, 16, 6, 539000, tzinfo=UTC)
    assert prompt.raw["extra_field"] == {"kept": True}


async def test_tune_failure_fields_are_parsed(client: AstriaClient, fake: FakeAstria):
    fake.fail_next(
        "GET",
        "/tunes/5",
        200,
        body={
            "id": 5,
            "title": "t",
            "name": None,
            "token": None,
            "failed_at": "2024-01-01T00:00:00Z",
        },
    )
    tune = await client.get_tune(5)
    assert tune.failed and "2024-01-01" in (tune.error or "")
    assert (tune.name, tune.token) == ("", "ohwx")
    fake.fail_next("GET", "/tunes/6", 200, body={"id": 6, "title": "t", "error": "Too few faces"})
    assert (await client.get_tune(6)).error == "Too few faces"


# -- errors --------------------------------------------------------------------------------


async def test_wrong_key_is_auth_error_without_retry(fake: FakeAstria):
    slept: list[float] = []

    async def record(s: float) -> None:
        slept.append(s)

    async with AstriaClient("sd_wrong", fake.url, sleep=record) as bad:
        with pytest.raises(AuthError) as info:
            await bad.get_tune(1)
    assert info.value.status == 401 and str(info.value) == "Unauthorized"
    assert len(fake.requests) == 1 and slept == []

    async with AstriaClient(None, fake.url, sleep=record) as anonymous:
        with pytest.raises(AuthError):
            await anonymous.list_tunes()
    assert "authorization" not in fake.requests[-1].headers


async def test_unknown_ids_are_not_found(client: AstriaClient, sleeps: list[float]):
    with pytest.raises(NotFoundError) as info:
        await client.get_tune(999_999)
    assert info.value.status == 404 and str(info.value) == "Not found"
    with pytest.raises(NotFoundError):
        await client.create_prompt(999_999, PromptRequest(text="x"))
    with pytest.raises(NotFoundError):
        await client.get_prompt(1, tune_id=SDXL)
    assert sleeps == []


async def test_validation_errors_carry_server_message(client: AstriaClient, fake: FakeAstria):
    with pytest.raises(ValidationError) as info:
        await client.create_tune(TuneRequest(title="x", name="man", images=[]))
    assert info.value.status == 422 and "Images can't be blank" in str(info.value)

    tune = fake.add_tune("ready")
    bad = PromptRequest(text=f"<lora:{tune['id']}:1> x", num_images=9)
    with pytest.raises(ValidationError, match="num_images must be between 1 and 8"):
        await client.create_prompt(SDXL, bad)
    two = PromptRequest(text=f"<lora:{tune['id']}:1> <lora:{tune['id']}:1> x")
    with pytest.raises(ValidationError, match="multiple LoRA"):
        await client.create_prompt(SDXL, two)
    with pytest.raises(ValidationError, match="inpaint_faces requires super_resolution"):
        await client.create_prompt(SDXL, PromptRequest(text="x", super_resolution=False))
    assert "rejected the request: inpaint_faces" in ValidationError("inpaint_faces").user_message

    fake.fail_next("POST", "/tunes", 422, body={"name": ["can't be blank"], "images": ["missing"]})
    with pytest.raises(ValidationError) as info:
        await client.create_tune(tune_request())
    assert str(info.value) == "name can't be blank; images missing"
    fake.fail_next("POST", "/tunes", 422, body={"message": "Bad class name"})
    with pytest.raises(ValidationError) as info:
        await client.create_tune(tune_request())
    assert str(info.value) == "Bad class name"


async def test_429_on_get_waits_retry_after_then_succeeds(
    client: AstriaClient, fake: FakeAstria, sleeps: list[float]
):
    tune = fake.add_tune("ready")
    fake.fail_next("GET", f"/tunes/{tune['id']}", 429, body={"error": "Slow down"}, retry_after="7")
    got = await client.get_tune(tune["id"])
    assert got.id == tune["id"]
    assert sleeps == [7.0]
    assert len(fake.find_requests("GET", f"/tunes/{tune['id']}")) == 2


async def test_429_retry_after_as_http_date(
    client: AstriaClient, fake: FakeAstria, sleeps: list[float]
):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    fake.fail_next("GET", "/tunes", 429, retry_after=when)
    assert await client.list_tunes() == []
    assert len(sleeps) == 1 and 27 <= sleeps[0] <= 31


async def test_429_on_post_is_raised_not_retried(
    client: AstriaClient, fake: FakeAstria, sleeps: list[float]
):
    fake.fail_next("POST", "/tunes", 429, body={"error": "Too many requests"}, retry_after="3")
    with pytest.raises(RateLimitError) as info:
        await client.create_tune(tune_request())
    assert info.value.retry_after == 3.0 and info.value.status == 429
    assert len(fake.find_requests("POST", "/tunes")) == 1
    assert sleeps == [] and fake.tunes == {}


async def test_500_on_get_is_retried_with_backoff(
    client: AstriaClient, fake: FakeAstria, sleeps: list[float]
):
    tune = fake.add_tune("ready")
    fake.fail_next("GET", "/tunes/", 500, times=2)
    assert (await client.get_tune(tune["id"])).id == tune["id"]
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0  # base 1 s, doubling, jitter
    assert len(fake.find_requests("GET", "/tunes/")) == 3


async def test_500_forever_gives_server_error_after_max_retries(
    client: AstriaClient, fake: FakeAstria, sleeps: list[float]
):
    fake.fail_next("GET", "/prompts/", 503, body={"error": "Maintenance"}, times=50)
    with pytest.raises(ServerError) as info:
        await client.get_prompt(1)
    assert info.value.status == 503 and str(info.value) == "Maintenance"
    assert len(fake.find_requests("GET", "/prompts/")) == 5  # 1 + max_read_retries (4)
    assert len(sleeps) == 4


async def test_500_on_post_is_not_retried(
    client: AstriaClient, fake: FakeAstria, sleeps: list[float]
):
    fake.fail_next("POST", f"/tunes/{SDXL}/prompts", 502, body={"error": "Bad gateway"})
    with pytest.raises(ServerError):
        await client.create_prompt(SDXL, PromptRequest(text="x"))
    assert len(fake.find_requests("POST")) == 1 and sleeps == []


async def test_timeout_is_server_error(fake: FakeAstria):
    fake.delay_next("GET", "/tunes", 0.3)
    async with AstriaClient(KEY, fake.url, timeout=0.1, max_read_retries=0) as quick:
        with pytest.raises(ServerError, match="timed out"):
            await quick.list_tunes()

    fake.delay_next("POST", "/tunes", 0.3)
    slept: list[float] = []

    async def record(s: float) -> None:
        slept.append(s)

    async with AstriaClient(KEY, fake.url, timeout=0.1, sleep=record) as quick:
        with pytest.raises(ServerError, match="timed out"):
            await quick.create_tune(tune_request())
    assert len(fake.find_requests("POST", "/tunes")) == 1 and slept == []


async def test_timeout_on_get_is_retried(fake: FakeAstria):
    slept: list[float] = []

    async def record(s: float) -> None:
        slept.append(s)

    fake.delay_next("GET", "/tunes", 0.3)
    async with AstriaClient(KEY, fake.url, timeout=0.1, sleep=record) as quick:
        assert await quick.list_tunes() == []
    assert len(slept) == 1


async def test_connection_refused_is_server_error():
    port = free_port()
    slept: list[float] = []

    async def record(s: float) -> None:
        slept.append(s)

    async with AstriaClient(KEY, f"http://127.0.0.1:{port}", max_read_retries=2, sleep=record) as c:
        with pytest.raises(ServerError) as info:
            await c.get_tune(1)
    assert info.value.status is None and len(slept) == 2
    assert isinstance(info.value, BackendError)


# -- download and secrecy ------------------------------------------------------------------


async def test_download_sends_key_only_to_api_host(client: AstriaClient, fake: FakeAstria):
    with FakeAstria(api_key="other", files_require_auth=False) as foreign:
        [remote_url] = foreign.add_prompt(foreign.add_tune("foreign")["id"])["images"]
        [own_url] = fake.add_prompt(fake.add_tune("own")["id"])["images"]
        assert remote_url.startswith(foreign.url) and own_url.startswith(fake.url)

        own = await client.download(own_url)
        relative = await client.download(own_url.removeprefix(fake.url))
        remote = await client.download(remote_url)

        assert own == relative and own[:8] == b"\x89PNG\r\n\x1a\n"
        assert remote[:8] == b"\x89PNG\r\n\x1a\n"
        own_requests = fake.find_requests("GET", "/files/")
        assert [r.headers.get("authorization") for r in own_requests] == [f"Bearer {KEY}"] * 2
        [foreign_request] = foreign.find_requests("GET", "/files/")
        assert "authorization" not in foreign_request.headers
        assert KEY not in str(foreign_request.headers)


async def test_in_process_transport_and_foreign_download(fake: FakeAstria):
    """The embedded-worker setup: API calls go through ASGI, other hosts over the network."""
    tune = fake.add_tune("ready")
    [url] = fake.add_prompt(tune["id"])["images"]
    transport = httpx.ASGITransport(app=fake.app)
    async with AstriaClient(KEY, "http://worker.internal", transport=transport) as local:
        assert (await local.get_tune(tune["id"])).id == tune["id"]
        image = await local.download(url)  # fake.url is another origin than the worker's
    assert image[:8] == b"\x89PNG\r\n\x1a\n"
    api_call, download = fake.requests[-2:]
    assert api_call.headers["host"] == "worker.internal"
    assert api_call.headers["authorization"] == f"Bearer {KEY}"
    assert download.path.startswith("/files/") and "authorization" not in download.headers


async def test_download_missing_file_is_not_found(client: AstriaClient):
    with pytest.raises(NotFoundError):
        await client.download("/files/nope.png")


async def test_key_never_logged(
    client: AstriaClient, fake: FakeAstria, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    fake.fail_next("GET", "/tunes", 500)
    fake.fail_next("GET", "/prompts/", 429, retry_after="1")
    await client.list_tunes()
    with pytest.raises(NotFoundError):
        await client.get_prompt(12345)
    tune = await client.create_tune(tune_request())
    with pytest.raises(ValidationError):
        await client.create_prompt(SDXL, PromptRequest(text="x", num_images=0))
    await client.delete_tune(tune.id)
    async with AstriaClient(KEY, fake.url, timeout=0.1, max_read_retries=0) as quick:
        fake.delay_next("GET", "/tunes", 0.3)
        with pytest.raises(ServerError):
            await quick.list_tunes()

    assert any("retry 1/4" in r.getMessage() for r in caplog.records)  # logging did happen
    assert any(r.name == "backends.astria" and r.levelno == logging.DEBUG for r in caplog.records)
    assert KEY not in caplog.text
    assert KEY not in repr(client)
