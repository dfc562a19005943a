"""SIGTERM during a running job, for the bot (`run`, Telegram) and the worker, as real processes.

Each must exit within 30 s (the bound the systemd units and compose give them before SIGKILL)
with status 0, and the interrupted job must finish after the next start, exactly once. The
remote sides are fakes (Telegram Bot API, Astria); the worker runs the tiny SDXL on the CPU.
In-process: a stop lets a result that is being sent finish, so it is not sent twice.
"""

from __future__ import annotations

import asyncio
import io
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import running_core
from bot.chat.console import ConsoleNotifier
from bot.config import Settings
from bot.core.records import ChatTarget, Delivery
from bot.core.service import IncomingPhoto
from tests.conftest import FAKE_KEY
from tests.fakes.astria_server import FakeAstria
from tests.fakes.telegram_api import TOKEN, FakeTelegram, Users
from tests.fakes.threaded_server import free_port
from tests.imagegen import jpeg_bytes
from tests.processes import TINY_ON_CPU, BotProcess, bot_env, until, wait_for_worker, worker_health

STOP_BOUND_S = 30
USER = 4242
WORKER_KEY = "worker-test-key"


@pytest.fixture
def processes() -> Iterator[list[BotProcess]]:
    """Every process a test starts is killed at the end, whatever happened."""
    started: list[BotProcess] = []
    yield started
    for process in started:
        process.kill()


def base_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """One thread: the tiny model on a shared CPU, where threads only fight."""
    return bot_env(tmp_path / "data", OMP_NUM_THREADS="1", **values)


@pytest.mark.slow
def test_bot_sigterm_while_training_resumes_after_restart(
    fake_astria: FakeAstria, tmp_path: Path, processes: list[BotProcess]
) -> None:
    with FakeTelegram() as telegram:
        users = Users(telegram)
        env = base_env(
            tmp_path,
            TELEGRAM_BOT_TOKEN=TOKEN,
            TELEGRAM_API_URL=telegram.api_url,
            TELEGRAM_FILE_URL=telegram.file_url,
            ASTRIA_API_KEY=FAKE_KEY,
            ASTRIA_API_URL=fake_astria.url,
            POLL_INTERVAL_S="0.05",
            CREDITS="off",  # open with a paid backend it would charge (tests/conftest.py)
            CONSENT_REQUIRED="false",
        )

        def said(*words: str) -> list[str]:
            texts = [
                call.params.get("text", "")
                for call in telegram.find("sendMessage", USER) + telegram.find("editMessageText")
            ]
            return [text for text in texts if all(word in text for word in words)]

        fake_astria.hold_training()
        first = BotProcess(["run"], env, tmp_path)
        processes.append(first)
        for seed in range(4):
            users.document(USER, jpeg_bytes(1024, 1024, seed=seed), name=f"{seed}.jpg")
        until(lambda: said("4 photos received"), "the photo counter")
        users.message(USER, text="/train man")
        until(lambda: said("Training", "in progress"), "the training status")
        until(lambda: fake_astria.tunes, "the tune on the backend")

        assert first.terminate_within(STOP_BOUND_S) == 0, first.output
        assert "stopped by a signal" in first.output
        assert not said("is ready")

        fake_astria.release_training()
        second = BotProcess(["run"], env, tmp_path)
        processes.append(second)
        until(lambda: said("is ready"), "the resumed training to finish", timeout=60)
        assert second.terminate_within(STOP_BOUND_S) == 0, second.output

    assert len(fake_astria.tunes) == 1  # resumed, not trained twice
    ready = [c for c in telegram.find("sendMessage", USER) if "is ready" in c.params["text"]]
    assert len(ready) == 1


@pytest.mark.slow
def test_worker_sigterm_while_generating_resumes_after_restart(
    tmp_path: Path, processes: list[BotProcess]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = base_env(
        tmp_path,
        **TINY_ON_CPU,
        WORKER_API_KEY=WORKER_KEY,
    )
    auth = {"Authorization": f"Bearer {WORKER_KEY}"}
    http = httpx.Client(base_url=url, headers=auth, timeout=10)

    def health() -> dict[str, Any] | None:
        return worker_health(http)

    first = BotProcess(["worker", "--port", str(port)], env, tmp_path)
    processes.append(first)
    wait_for_worker(http, timeout=60)
    created = http.post(
        "/tunes/666678/prompts",
        json={"prompt": {"text": "portrait", "num_images": 1, "steps": 20, "w": 64, "h": 64,
                         "super_resolution": False, "inpaint_faces": False}},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    prompt_id = created.json()["id"]
    # The first job loads the model, seconds on a CPU: the signal lands while it runs.
    until(lambda: (health() or {}).get("running") == f"prompt {prompt_id}", "the prompt to run")

    # uvicorn re-raises the signal once it has shut down cleanly: the status says "SIGTERM",
    # which systemd and Docker count as a clean stop.
    assert first.terminate_within(STOP_BOUND_S) in (0, -signal.SIGTERM), first.output
    assert f"prompt {prompt_id}: interrupted, stays queued" in first.output
    assert "worker stopped" in first.output
    assert " INFO uvicorn.error: Shutting down" in first.output  # our log format, not uvicorn's

    second = BotProcess(["worker", "--port", str(port)], env, tmp_path)
    processes.append(second)
    until(health, "the restarted worker")

    def finished() -> dict[str, Any] | None:
        prompt = http.get(f"/prompts/{prompt_id}").json()
        return prompt if prompt["images"] or prompt["user_error"] else None

    prompt = until(finished, "the resumed prompt", timeout=90)
    assert prompt["user_error"] is None and len(prompt["images"]) == 1
    assert http.get(prompt["images"][0]).status_code == 200
    assert (health() or {})["queue"] == {"prompts": 0, "tunes": 0}
    assert second.terminate_within(STOP_BOUND_S) in (0, -signal.SIGTERM), second.output
    http.close()


class SlowSender(ConsoleNotifier):
    """A frontend whose closing message takes until the test releases it (a slow upload)."""

    def __init__(self) -> None:
        super().__init__(io.StringIO())
        self.sending = asyncio.Event()
        self.release = asyncio.Event()
        self.sent: list[str] = []

    async def send_text(self, delivery: Delivery, text: str) -> None:
        self.sending.set()
        await self.release.wait()
        self.sent.append(text)


async def test_stop_lets_a_result_being_sent_finish(
    make_settings: Callable[..., Settings], photo_dir: Path
) -> None:
    notifier = SlowSender()
    async with running_core(make_settings()) as core:
        core.tracker.register_notifier("console", notifier)
        await core.start_jobs()
        user = await core.service.user("console", "ann")
        photos = [IncomingPhoto(p.read_bytes(), p.name) for p in sorted(photo_dir.iterdir())]
        await core.service.add_photos(user, photos)
        await core.service.start_training(user, "man", ChatTarget("console", "console"))
        await asyncio.wait_for(notifier.sending.wait(), 30)

        stopping = asyncio.create_task(core.tracker.stop())
        await asyncio.sleep(0.05)  # the stop is under way while the message is being sent
        notifier.release.set()
        await stopping
        undelivered = await core.store.undelivered()

    assert len(notifier.sent) == 1 and "is ready" in notifier.sent[0]
    assert undelivered == []


@pytest.mark.slow
def test_console_with_in_process_worker_stops_on_sigterm_and_resumes(
    tmp_path: Path, photo_dir: Path, processes: list[BotProcess]
) -> None:
    """The embedded default: the worker's GPU thread may be in a step that checks no abort
    flag (the model load) when the signal lands. The stop waits WORKER_STOP_GRACE_S for it
    (short here, so that path runs), leaves it behind, and the training resumes next start."""
    env = base_env(
        tmp_path,
        BACKEND="local",
        **TINY_ON_CPU,
        WORKER_TRAIN_STEPS="2",
        WORKER_STOP_GRACE_S="1",
        POLL_INTERVAL_S="0.2",
        CONSENT_REQUIRED="false",  # tests/test_consent.py asks it
    )
    first = BotProcess(["chat"], env, tmp_path, stdin=True)
    processes.append(first)
    first.send(f"/photos {photo_dir}\n/train man\n")
    first.wait_for(r"Training of man #1: in progress", timeout=120)

    assert first.terminate_within(STOP_BOUND_S) == 0, first.output
    assert "is ready" not in first.output
    log = (tmp_path / "data" / "logs" / "bot.log").read_text()
    assert "stopped by a signal" in log

    second = BotProcess(["chat"], env, tmp_path, stdin=True)
    processes.append(second)
    second.wait_for("is ready", timeout=240)
    after = second.close_input_and_wait()
    assert after.count("is ready") == 1
