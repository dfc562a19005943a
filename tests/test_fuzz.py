"""Generated requests at the worker's API and the bot's callback server (issue 13).

Hypothesis draws ids, query strings, JSON bodies, form fields and multipart parts, biased
toward what broke before (huge numbers, lone surrogates, NUL, deep nesting, tag fragments).
Whatever it sends: never a 500, no row committed for a refused request, and `/healthz` still
answers within 1 s. Both servers run under uvicorn with the production limits, on a thread of
their own, and are driven over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.base import SDXL_BASE_TUNE_ID
from backends.local import Worker
from backends.server_limits import server_options
from bot.app import running_core
from bot.config import load_settings
from tests.fakes.threaded_server import free_port
from tests.worker_fixtures import run_uvicorn, worker_config

EXAMPLES = 120
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


nasty_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\ud800", "a\x00b", "<lora:", "<lora:1:>", "<lora:a:" * 50, "1e300", "nan"]),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.just("9" * 25),
)
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, nasty_text),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
PROMPT_KEYS = ["text", "w", "h", "steps", "num_images", "seed", "cfg_scale", "ar", "scheduler"]
TUNE_KEYS = ["title", "name", "token", "steps", "face_crop", "base_tune_id", "model_type"]
ids = st.one_of(st.integers(min_value=0, max_value=10**25).map(str), nasty_text)
queries = st.dictionaries(st.sampled_from(["limit", "offset", "before_id", "x"]), nasty_text)


def prompt_bodies() -> st.SearchStrategy[Any]:
    fields = st.fixed_dictionaries(
        {"text": nasty_text}, optional={k: json_values for k in PROMPT_KEYS[1:]}
    )
    return st.one_of(fields.map(lambda f: {"prompt": f}), fields, json_values)


@contextlib.contextmanager
def served_in_thread(serve: Callable[[threading.Event], Any]) -> Iterator[None]:
    """Run the coroutine function `serve(stop)` on its own event loop until the block ends."""
    stop = threading.Event()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(serve(stop))
        except BaseException as exc:  # surfaced after the block
            failure.append(exc)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)
        assert not failure, failure


async def until(stop: threading.Event) -> None:
    await asyncio.to_thread(stop.wait)


def seg(text: str, safe: str = "") -> str:
    """Percent-encoded as a hostile client would, lone surrogates included (as their bytes)."""
    return quote(text, safe=safe, errors="surrogatepass")


def query_string(query: dict[str, str]) -> str:
    return "?" + "&".join(f"{seg(k)}={seg(v)}" for k, v in query.items()) if query else ""


def wait_healthy(url: str) -> None:
    for _ in range(600):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered /healthz")


def assert_healthy(client: httpx.Client) -> None:
    response = client.get("/healthz", timeout=1.0)  # raises if it takes longer than 1 s
    assert response.status_code == 200


# -- the worker ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    pytest.importorskip("torch")
    port = free_port()
    config = worker_config(tmp_path_factory.mktemp("fuzz") / "w")
    url = f"http://127.0.0.1:{port}"

    async def serve(stop: threading.Event) -> None:
        worker = Worker(config)
        async with run_uvicorn(worker.app, port, **server_options()):
            await until(stop)

    with served_in_thread(serve):
        wait_healthy(url)
        yield url, config.db_path


def row_count(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return sum(
            conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("tunes", "prompts")
        )


def check(client: httpx.Client, db: Path, response: httpx.Response, before: int) -> None:
    assert response.status_code < 500, (
        response.request.method,
        response.request.url,
        response.text,
    )
    if response.status_code >= 400:
        assert row_count(db) == before, "a refused request committed a row"
    elif response.status_code == 201:  # accepted: take it back, so the runner has nothing to do
        kind = "tunes" if response.request.url.path == "/tunes" else "prompts"
        assert client.delete(f"/{kind}/{response.json()['id']}").status_code == 200
    assert_healthy(client)


@pytest.mark.slow
@FUZZ
@given(method=st.sampled_from(["GET", "DELETE", "POST"]), first=ids, second=ids, query=queries)
def test_worker_paths_and_queries(
    worker_url: tuple[str, Path], method: str, first: str, second: str, query: dict[str, str]
) -> None:
    url, db = worker_url
    paths = [
        f"/tunes/{seg(first)}",
        f"/tunes/{seg(first)}/prompts/{seg(second)}",
        f"/prompts/{seg(second)}",
        f"/files/{seg(first, '/')}",
    ]
    with httpx.Client(base_url=url) as client:
        for path in paths:
            before = row_count(db)
            check(client, db, client.request(method, path + query_string(query)), before)


@pytest.mark.slow
@FUZZ
@given(body=prompt_bodies(), as_form=st.booleans())
def test_worker_prompt_bodies(worker_url: tuple[str, Path], body: Any, as_form: bool) -> None:
    url, db = worker_url
    with httpx.Client(base_url=url) as client:
        before = row_count(db)
        path = f"/tunes/{SDXL_BASE_TUNE_ID}/prompts"
        raw = json.dumps(body).encode()  # escapes lone surrogates as `\ud800`, as attackers do
        if as_form and isinstance(body, dict) and isinstance(body.get("prompt"), dict):
            form = {f"prompt[{k}]": json.dumps(v) for k, v in body["prompt"].items()}
            response = client.post(path, content=_urlencode(form), headers=FORM)
        else:
            response = client.post(path, content=raw, headers={"content-type": "application/json"})
        check(client, db, response, before)


FORM = {"content-type": "application/x-www-form-urlencoded"}


def _urlencode(form: dict[str, str]) -> bytes:
    return "&".join(f"{seg(k)}={seg(v)}" for k, v in form.items()).encode()


@pytest.mark.slow
@FUZZ
@given(
    fields=st.dictionaries(st.sampled_from(TUNE_KEYS), nasty_text.filter(_utf8)),
    parts=st.lists(
        st.tuples(
            st.sampled_from(["tune[images][]", "tune[images]", "images", "tune[title]"]),
            st.binary(max_size=64) | st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"]),
        ),
        max_size=4,
    ),
)
def test_worker_tune_multipart(
    worker_url: tuple[str, Path], fields: dict[str, str], parts: list[tuple[str, bytes]]
) -> None:
    url, db = worker_url
    with httpx.Client(base_url=url) as client:
        before = row_count(db)
        files = [(name, (f"p{i}.jpg", data, "image/jpeg")) for i, (name, data) in enumerate(parts)]
        data = {f"tune[{k}]": v for k, v in fields.items()}
        response = client.post("/tunes", data=data, files=files or None)
        check(client, db, response, before)


# -- the bot's callback server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def callback_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = load_settings(
        astria_api_key="sd_fuzz",
        astria_api_url="http://127.0.0.1:9",
        data_dir=tmp_path_factory.mktemp("bot") / "data",
        public_url=url,
        callback_port=port,
    )

    async def serve(stop: threading.Event) -> None:
        async with running_core(settings):
            await until(stop)

    with served_in_thread(serve):
        wait_healthy(url)
        yield url


@pytest.mark.slow
@FUZZ
@given(
    kind=st.sampled_from(["tune", "generation"]) | nasty_text,
    job=ids,
    secret=nasty_text,
    body=json_values,
)
def test_callback_server(callback_url: str, kind: str, job: str, secret: str, body: Any) -> None:
    with httpx.Client(base_url=callback_url) as client:
        segments = [seg(s) for s in (kind, job, secret)]
        response = client.post("/callbacks/" + "/".join(segments), content=json.dumps(body))
        assert response.status_code < 500, (response.request.url, response.text)
        assert_healthy(client)
