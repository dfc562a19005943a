"""`photoshoot-bot doctor` on a good and on broken deployments, against fakes of the remote side."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backends.local import WorkerConfig, create_worker
from bot.config import Settings
from bot.doctor import report, run_checks
from tests.conftest import FAKE_KEY
from tests.fakes.astria_server import FakeAstria
from tests.fakes.telegram_api import BOT_USERNAME, TOKEN, FakeTelegram
from tests.processes import bot_env
from tests.worker_fixtures import run_uvicorn

DISCORD_TOKEN = "MTAxNTk.fake-discord-token.0123456789abcdefghij"
WORKER_KEY = "worker-key-0123456789"


@pytest.fixture
async def discord_api() -> AsyncIterator[str]:
    """Discord's `GET /users/@me`: the bot user for our token, 401 for any other."""

    async def me(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bot {DISCORD_TOKEN}":
            return JSONResponse({"message": "401: Unauthorized", "code": 0}, status_code=401)
        return JSONResponse({"id": "1", "username": "photoshoot", "bot": True})

    app = Starlette(routes=[Route("/api/v10/users/@me", me)])
    async with run_uvicorn(app) as url:
        yield f"{url}/api/v10"


def printed(checks: list) -> tuple[int, str]:
    out = io.StringIO()
    status = report(checks, out)
    return status, out.getvalue()


async def test_a_good_configuration_passes(
    make_settings: Callable[..., Settings], fake_tg: FakeTelegram, discord_api: str
) -> None:
    settings = make_settings(
        telegram_bot_token=TOKEN,
        telegram_api_url=fake_tg.api_url,
        discord_bot_token=DISCORD_TOKEN,
    )
    status, text = printed(await run_checks(settings, discord_api=discord_api))

    assert status == 0, text
    assert "FAIL" not in text and text.rstrip().endswith("All good.")
    assert f"@{BOT_USERNAME}" in text
    assert "the key works" in text
    assert "writable" in text


async def test_a_broken_configuration_is_explained_in_plain_words(
    make_settings: Callable[..., Settings],
    fake_tg: FakeTelegram,
    discord_api: str,
    tmp_path: Path,
) -> None:
    not_a_folder = tmp_path / "data-is-a-file"
    not_a_folder.write_text("")
    wrong_telegram = "999999999:AAWrongTokenWrongTokenWrongToken00"
    settings = make_settings(
        astria_api_key="sd_wrong_key",
        telegram_bot_token=wrong_telegram,
        telegram_api_url=fake_tg.api_url,
        discord_bot_token="wrong-discord-token-0123456789abcdef",
        data_dir=not_a_folder,
        public_url="http://bot.example.org",
    )
    status, text = printed(await run_checks(settings, discord_api=discord_api))

    assert status == 1
    assert "the key is wrong" in text and "ASTRIA_API_KEY" in text
    assert "TELEGRAM_BOT_TOKEN is wrong" in text
    assert "DISCORD_BOT_TOKEN is wrong" in text
    assert "cannot write there" in text and "DATA_DIR" in text
    assert "must start with https://" in text
    assert "5 problems found." in text
    for secret in ("sd_wrong_key", wrong_telegram, "wrong-discord-token"):
        assert secret not in text


@pytest.mark.parametrize("key, works", [(WORKER_KEY, True), ("not-the-key", False)])
async def test_our_worker_is_probed_and_its_key_checked(
    make_settings: Callable[..., Settings], tmp_path: Path, key: str, works: bool
) -> None:
    worker = create_worker(WorkerConfig(data_dir=tmp_path / "worker", api_key=WORKER_KEY))
    async with run_uvicorn(worker.app) as url:
        settings = make_settings(
            backend="local", astria_api_key=None, local_worker_url=url, worker_api_key=key
        )
        status, text = printed(await run_checks(settings))

    assert status == (0 if works else 1), text
    if works:
        assert "model loads on first job" in text and "0 prompts" in text
    else:
        assert "the key is wrong" in text and "WORKER_API_KEY" in text


async def test_an_in_process_worker_needs_the_gpu_it_is_told_to_use(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    settings = make_settings(backend="local", astria_api_key=None)
    status, text = printed(await run_checks(settings))
    assert status == 0 and "no CUDA GPU, so it runs on the CPU" in text

    monkeypatch.setenv("WORKER_DEVICE", "cuda")
    status, text = printed(await run_checks(settings))
    assert status == 1 and "WORKER_DEVICE=cuda but PyTorch sees no CUDA GPU" in text


def test_the_command_exits_non_zero_only_when_something_is_wrong(
    fake_astria: FakeAstria, tmp_path: Path
) -> None:
    env = bot_env(tmp_path / "data", ASTRIA_API_KEY=FAKE_KEY, ASTRIA_API_URL=fake_astria.url)

    def doctor(**changes: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", "doctor"],
            env={**env, **changes},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    good = doctor()
    assert good.returncode == 0, good.stdout + good.stderr
    bad = doctor(POLL_INTERVAL_S="soon")
    assert bad.returncode == 1
    assert "FAIL  configuration" in bad.stdout and "POLL_INTERVAL_S" in bad.stdout


@pytest.mark.parametrize("in_process", [True, False])
async def test_a_bad_worker_setting_fails_with_its_name(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, in_process: bool
) -> None:
    """WORKER_TRAIN_STEPS=abc would only fail when a training starts: the doctor says so now,
    also where the bot uses Astria (`photoshoot-bot worker` reads the same environment)."""
    pytest.importorskip("torch")
    settings = (
        make_settings(backend="local", astria_api_key=None) if in_process else make_settings()
    )
    monkeypatch.setenv("WORKER_TRAIN_STEPS", "abc")
    status, text = printed(await run_checks(settings))
    assert status == 1, text
    [line] = [line for line in text.splitlines() if "WORKER_TRAIN_STEPS" in line]
    assert line.startswith("FAIL") and "abc" in line
