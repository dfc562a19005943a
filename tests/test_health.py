"""`GET /healthz` on the worker and on the bot's HTTP server: open, informative, no secrets."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import httpx

from backends.local import WorkerConfig, create_worker
from bot.app import running_core
from bot.config import Settings
from tests.fakes.threaded_server import free_port
from tests.worker_fixtures import run_uvicorn

KEY = "worker-secret-key-0123456789"
ROOT = Path(__file__).resolve().parents[1]


async def test_worker_healthz_needs_no_key_and_shows_no_secret(tmp_path: Path) -> None:
    worker = create_worker(WorkerConfig(data_dir=tmp_path / "worker", api_key=KEY))
    async with run_uvicorn(worker.app) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/tunes")).status_code == 401  # the API itself stays closed
        response = await http.get("/healthz")
        suffixed = await http.get("/healthz.json")

    assert response.status_code == 200 and suffixed.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["model"] == "tiny" and body["model_loaded"] is False
    assert body["queue"] == {"prompts": 0, "tunes": 0}
    assert body["running"] is None
    assert "gpu" in body  # None without CUDA
    assert KEY not in response.text


async def test_worker_healthz_is_503_while_not_serving(tmp_path: Path) -> None:
    worker = create_worker(WorkerConfig(data_dir=tmp_path / "worker"))
    transport = httpx.ASGITransport(app=worker.app, client=("127.0.0.1", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://w") as http:
        response = await http.get("/healthz")  # no lifespan ran: the worker never started
    assert response.status_code == 503 and response.json()["ok"] is False


async def test_bot_callback_server_answers_healthz(
    make_settings: Callable[..., Settings],
) -> None:
    port = free_port()
    settings = make_settings(public_url="https://bot.example.org", callback_port=port)
    async with running_core(settings), httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/healthz")
    assert response.status_code == 200 and response.json()["ok"] is True


async def docker_healthcheck(dockerfile: str, **env: str) -> int:
    """Run a Dockerfile's HEALTHCHECK command (exec form) here, as Docker runs it."""
    text = (ROOT / "deploy" / dockerfile).read_text()
    [command] = re.findall(r"^HEALTHCHECK .*? CMD (\[.*\])$", text, re.MULTILINE)
    argv = json.loads(command)
    process = await asyncio.create_subprocess_exec(
        *argv, env={"PATH": os.environ["PATH"], **env}, stderr=asyncio.subprocess.DEVNULL
    )
    return await process.wait()


async def test_the_bot_image_healthcheck_probes_the_callback_server(
    make_settings: Callable[..., Settings],
) -> None:
    port = str(free_port())
    public = {"PUBLIC_URL": "https://bot.example.org", "CALLBACK_PORT": port}
    assert await docker_healthcheck("Dockerfile.bot") == 0  # no server to probe: healthy
    assert await docker_healthcheck("Dockerfile.bot", **public) != 0  # should run, does not
    settings = make_settings(public_url=public["PUBLIC_URL"], callback_port=int(port))
    async with running_core(settings):
        assert await docker_healthcheck("Dockerfile.bot", **public) == 0
