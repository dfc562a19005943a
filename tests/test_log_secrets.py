"""No secret in any log line, in either format (issue 13, item 9): every secret (the bot tokens,
ASTRIA_API_KEY, WORKER_API_KEY, a per-job callback secret) is sent in every encoding it can
arrive in (raw, percent-encoded, in a URL path and query), through the worker as a real process
and through the bot's callback/webhook server; uvicorn's own loggers go through our formatter.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot import logs
from bot.web import WebServer
from tests.fakes.threaded_server import free_port
from tests.processes import TINY_ON_CPU, BotProcess, wait_for_worker
from tests.test_shutdown import base_env

SECRETS = {
    "TELEGRAM_BOT_TOKEN": "123456789:AAHtelegramSecretToken_abcdefghijk",
    "DISCORD_BOT_TOKEN": "MTIzNDU2Nzg5MDEy.discordSecret.token_abcdefghijklm",
    "ASTRIA_API_KEY": "sd_astria+secret/key=value42",
    "WORKER_API_KEY": "worker+secret/key=value42",
}
CALLBACK_SECRET = "cb+job/secret=value42"
"""Per job: not configured anywhere, so only keeping it out of log calls keeps it out of logs.
It travels only in the callback URL the worker POSTs to (and that it logs as scheme and host)."""
ALL_SECRETS = [*SECRETS.values(), CALLBACK_SECRET]


def encodings(secret: str) -> set[str]:
    return {secret, quote(secret), quote(secret, safe=""), quote_plus(secret)}


def assert_no_secret(output: str) -> None:
    for secret in ALL_SECRETS:
        for form in encodings(secret):
            assert form not in output, f"{form!r} leaked into the log:\n{output}"


def json_lines(output: str) -> list[dict[str, object]]:
    """Every line is one JSON object (uvicorn's too): a parse error fails the test."""
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def leak_everywhere(http: httpx.Client) -> None:
    """Each configured secret in a path, a query and a header, in each encoding."""
    for secret in SECRETS.values():
        for form in encodings(secret):
            http.get(f"/files/prompts/{form}")
            http.get("/tunes", params={"key": form})
            http.get("/tunes", headers={"Authorization": f"Bearer {form}"})


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_worker_logs_no_secret(fmt: str, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    port = free_port()
    env = base_env(tmp_path, **TINY_ON_CPU)
    env.update(SECRETS)
    worker = BotProcess(["--log-format", fmt, "worker", "--port", str(port)], env, tmp_path)
    auth = {"Authorization": f"Bearer {SECRETS['WORKER_API_KEY']}"}
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=30)
    try:
        wait_for_worker(http)
        leak_everywhere(http)
        closed = free_port()  # nothing listens: the callback fails and is logged
        callback = (
            f"http://127.0.0.1:{closed}/callbacks/prompt/1/{CALLBACK_SECRET}?s={CALLBACK_SECRET}"
        )
        body = {"prompt": {"text": "portrait", "num_images": 1, "steps": 1, "w": 64, "h": 64,
                           "super_resolution": False, "inpaint_faces": False,
                           "callback": callback}}  # fmt: skip
        assert http.post("/tunes/666678/prompts", json=body).status_code == 201
        worker.wait_for(r"callback http://127\.0\.0\.1.* failed", timeout=240)
    finally:
        http.close()
        worker.kill()
    output = worker.output
    assert_no_secret(output)
    assert "[redacted]" in output  # the secrets did reach log calls, and were scrubbed
    if fmt == "json":
        loggers = {line["logger"] for line in json_lines(output)}
        assert {"uvicorn.access", "uvicorn.error"} <= loggers
    else:
        assert " INFO uvicorn.access: " in output


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The bot's JSON logging with its configured secrets, into a stream; restored after.
    uvicorn's loggers start as in a fresh process (another test's uvicorn with its default
    log config may have given them handlers of their own)."""
    root = logging.getLogger()
    handlers, level, saved = root.handlers[:], root.level, set(logs._known_secrets)
    uvicorn_loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    uvicorn_state = [(lg.handlers[:], lg.propagate) for lg in uvicorn_loggers]
    for lg in uvicorn_loggers:
        lg.handlers[:], lg.propagate = [], True
    stream = io.StringIO()
    logs.setup_logging("INFO", "json")
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    logs.add_secrets(*SECRETS.values())
    yield stream
    root.handlers[:], root.level = handlers, level
    for lg, (lg_handlers, propagate) in zip(uvicorn_loggers, uvicorn_state, strict=True):
        lg.handlers[:], lg.propagate = lg_handlers, propagate
    logs._known_secrets.clear()
    logs._known_secrets.update(saved)


async def failing(request: Request) -> Response:
    """A handler that breaks with a secret in its error: uvicorn logs the traceback."""
    raise RuntimeError(f"upstream refused {request.path_params['rest']} and {SECRETS.values()}")


async def test_the_callback_server_logs_no_secret_and_only_json(json_log: io.StringIO) -> None:
    port = free_port()
    server = WebServer(host="127.0.0.1", port=port)
    server.add_route(Route("/webhook/{rest:path}", failing, methods=["POST"]))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for secret in SECRETS.values():
                for form in encodings(secret):
                    answer = await http.post(f"/webhook/{form}", params={"s": form})
                    assert answer.status_code == 500
            answer = await http.post(f"/callbacks/prompt/99999999999999999999/{CALLBACK_SECRET}")
            assert answer.status_code == 404
    finally:
        await server.stop()
    output = json_log.getvalue()
    for secret in SECRETS.values():
        for form in encodings(secret):
            assert form not in output, f"{form!r} leaked into the log:\n{output}"
    entries = json_lines(output)
    errors = [e for e in entries if e["logger"] == "uvicorn.error" and "exception" in e]
    assert errors, output  # uvicorn's own traceback line, through our JSON formatter
    assert all("[redacted]" in str(e["exception"]) for e in errors)
