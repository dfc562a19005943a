"""The job tracker against the fake Astria: callbacks, crash recovery, transient failures."""

from __future__ import annotations

import asyncio
import getpass
import io
import itertools
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bot.app import running_core
from bot.chat.console import ConsoleNotifier
from bot.config import Settings
from bot.core.jobs import MAX_SUBMITTING
from bot.core.records import ChatTarget
from bot.core.service import IncomingPhoto
from tests.conftest import chat
from tests.fakes.astria_server import FakeAstria
from tests.fakes.threaded_server import free_port

SCRIPT = "/photos {photos}\n/train man\n/wait\n/imagine astronaut\n/wait\n"


async def test_callbacks_wake_jobs_long_before_the_next_poll(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    port = free_port()
    settings = make_settings(
        poll_interval_s=60, public_url=f"http://127.0.0.1:{port}", callback_port=port
    )
    output = await asyncio.wait_for(chat(settings, SCRIPT.format(photos=photo_dir)), timeout=30)

    assert "is ready" in output and "saved:" in output
    sent = [url for url, _ in fake_astria.callbacks_sent]
    assert len(sent) == 2
    assert sent[0].startswith(f"http://127.0.0.1:{port}/callbacks/tune/")
    assert sent[1].startswith(f"http://127.0.0.1:{port}/callbacks/generation/")
    assert fake_astria.callback_failures == []


async def test_a_repeated_callback_changes_nothing(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    """The fleet sends callbacks at least once: each arrives twice here, and the user still
    hears of each tune and each image once."""
    fake_astria.callback_repeats = 2
    port = free_port()
    settings = make_settings(
        poll_interval_s=60, public_url=f"http://127.0.0.1:{port}", callback_port=port
    )
    output = await asyncio.wait_for(chat(settings, SCRIPT.format(photos=photo_dir)), timeout=30)

    images = sum(len(prompt.get("images", [])) for prompt in fake_astria.prompts.values())
    assert output.count("is ready") == 1
    assert output.count("saved:") == 1
    assert images > 0 and len(re.findall(r"images/\d+/\d+\.png", output)) == images
    assert fake_astria.callback_failures == []


async def test_callback_with_a_wrong_secret_is_refused(
    make_settings: Callable[..., Settings],
) -> None:
    port = free_port()
    settings = make_settings(public_url=f"http://127.0.0.1:{port}", callback_port=port)
    async with running_core(settings), httpx.AsyncClient() as client:
        wrong = await client.post(f"http://127.0.0.1:{port}/callbacks/tune/1/guess", json={})
        health = await client.get(f"http://127.0.0.1:{port}/healthz")
    assert wrong.status_code == 404
    assert health.status_code == 200


async def test_a_tune_created_before_a_crash_is_adopted_not_created_twice(
    make_settings: Callable[..., Settings], fake_astria: FakeAstria
) -> None:
    """The bot stored the tune, POSTed it, and died before saving the backend id."""
    settings = make_settings()
    title = str(uuid.uuid4())
    async with running_core(settings) as core:
        user = await core.store.get_or_create_user("console", getpass.getuser())
        tune = await core.store.create_tune(
            user.id, title=title, class_name="man", token="ohwx", label=None, photo_ids=[]
        )
        await core.store.add_delivery("tune", tune.id, ChatTarget("console", "console"))
    remote = fake_astria.add_tune(title, "man", trained=True)

    output = await chat(settings, "/wait\n/models\n")

    assert fake_astria.find_requests("POST", "/tunes") == []
    assert "is ready" in output
    assert f"<lora:{remote['id']}:0.8>" in output


async def test_transient_backend_failures_are_waited_out(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    fake_astria.fail_next("GET", "/tunes/", 500, {"error": "boom"}, times=2)
    fake_astria.fail_next("GET", "/prompts/", 429, {"error": "slow down"}, retry_after="0", times=2)
    output = await chat(make_settings(), SCRIPT.format(photos=photo_dir))
    assert "is ready" in output and "saved:" in output
    assert "failed" not in output.lower()


async def test_a_failed_prompt_is_reported_and_not_retried(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    fake_astria.fail_prompts_with("NSFW content detected")
    output = await chat(make_settings(), SCRIPT.format(photos=photo_dir))
    assert "NSFW content detected" in output
    assert len(fake_astria.find_requests("POST", "/tunes/666678/prompts")) == 1


@pytest.mark.parametrize("message_id", ["status-1", None])
async def test_status_messages_are_edited_in_place_and_throttled(
    make_settings: Callable[..., Settings], photo_dir: Path, message_id: str | None
) -> None:
    """A notifier that records calls: the tracker must not send unchanged texts again. The
    store keeps what a resumed job compares with: a status message's id and its first text
    (its edits are not written), or, where there is no message (the console), the last text."""

    class Recorder(ConsoleNotifier):
        def __init__(self) -> None:
            super().__init__(open("/dev/null", "w"))  # noqa: SIM115
            self.statuses: list[tuple[int, str]] = []

        async def update_status(self, delivery, text):  # type: ignore[no-untyped-def]
            self.statuses.append((delivery.job_id, text))
            return message_id

    recorder = Recorder()
    settings = make_settings()
    async with running_core(settings) as core:
        core.tracker.register_notifier("console", recorder)
        await core.start_jobs()
        user = await core.service.user("console", "ann")
        await core.service.add_photos(
            user, [IncomingPhoto(p.read_bytes(), p.name) for p in sorted(photo_dir.iterdir())]
        )
        await core.service.start_training(user, "man", ChatTarget("console", "console"))
        await core.tracker.wait_idle()
        delivery = await core.store.get_delivery("tune", 1)
    texts = [text for _, text in recorder.statuses]
    assert texts[-1].endswith("done.")
    assert all(a != b for a, b in itertools.pairwise(texts))  # no repeats
    assert delivery is not None and delivery.status_message_id == message_id
    assert len(texts) > 1 and delivery.status_text == (
        texts[-1] if message_id is None else texts[0]
    )


async def test_a_resumed_status_message_is_edited_though_its_stored_text_is_the_same(
    make_settings: Callable[..., Settings],
) -> None:
    """The store keeps a status message's first text; before the restart it was edited to
    later ones. A resumed job whose status is that first text again must edit the message
    (it shows a later text); once this process has edited it, an unchanged text is not sent."""

    class Recorder(ConsoleNotifier):
        def __init__(self) -> None:
            super().__init__(open("/dev/null", "w"))  # noqa: SIM115
            self.statuses: list[str] = []

        async def update_status(self, delivery, text):  # type: ignore[no-untyped-def]
            self.statuses.append(text)
            return "status-1"

    recorder = Recorder()
    async with running_core(make_settings()) as core:
        core.tracker.register_notifier("console", recorder)
        user = await core.store.get_or_create_user("console", "ann")
        tune = await core.store.create_tune(
            user.id, title="t", class_name="man", token="ohwx", label=None, photo_ids=[]
        )
        stored = await core.store.add_delivery("tune", tune.id, ChatTarget("console", "console"))
        await core.store.set_status_message(stored.id, "status-1", "Training started.")
        resumed = await core.store.get_delivery("tune", tune.id)
        assert resumed is not None
        shown = await core.tracker._status(resumed, "Training started.")
        await core.tracker._status(shown, "Training started.")
    assert recorder.statuses == ["Training started."]


async def test_a_repeat_of_an_earlier_set_is_not_mistaken_for_it(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    """ "More like #1" repeats its original's text and seed; if the bot died before storing its
    prompt id, the restart must create it, not adopt the original's finished prompt."""
    settings = make_settings()
    await chat(settings, SCRIPT.format(photos=photo_dir))
    async with running_core(settings) as core:
        user = await core.store.get_or_create_user("console", getpass.getuser())
        [original] = await core.store.user_generations(user.id)
        await core.store.create_generation(
            user.id,
            tune_id=original.tune_id,
            prompt_typed=original.prompt_typed,
            prompt_sent=original.prompt_sent,
            negative_prompt=original.negative_prompt,
            options=original.options,
            seed=original.seed,
            target=ChatTarget("console", "console"),
        )
    await chat(settings, "/wait\n")
    assert len(fake_astria.prompts) == 2
    async with running_core(settings) as core:
        first, repeat = await core.store.user_generations(user.id)
        assert repeat.state == "done" and repeat.backend_id != first.backend_id


async def test_a_burst_of_prompts_reaches_the_backend_a_few_at_a_time(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    """Every job gets its status message at once; the creates go out MAX_SUBMITTING at a
    time (the fake holds each create open for a while), and every result still arrives."""
    burst = MAX_SUBMITTING * 2 + 1
    fake_astria.delay_next("POST", "/tunes/", 0.3, times=burst)  # prompt creates only
    script = f"/photos {photo_dir}\n/train man\n/wait\n" + "/imagine astronaut\n" * burst
    output = await asyncio.wait_for(chat(make_settings(), script + "/wait\n"), timeout=60)

    assert fake_astria.delayed_peak == MAX_SUBMITTING
    assert output.count("saved:") == burst


async def test_a_job_waiting_out_a_refusal_leaves_its_turn_to_the_others(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    """The first creates are told to come back in 30 s (429); the next job must not wait for
    them: a turn is held for one attempt, never across the wait."""
    async with running_core(make_settings()) as core:
        core.tracker.register_notifier("console", ConsoleNotifier(io.StringIO()))
        await core.start_jobs()
        user = await core.service.user("console", "ann")
        photos = [IncomingPhoto(p.read_bytes(), p.name) for p in sorted(photo_dir.iterdir())]
        await core.service.add_photos(user, photos)
        await core.service.start_training(user, "man", ChatTarget("console", "console"))
        await core.tracker.wait_idle()
        user = await core.service.user("console", "ann")

        fake_astria.fail_next("POST", "/tunes/", 429, retry_after="30", times=MAX_SUBMITTING)
        for _ in range(MAX_SUBMITTING + 1):
            await core.service.generate(user, "astronaut", ChatTarget("console", "console"))
        deadline = time.monotonic() + 10
        while not any(g.state == "done" for g in await core.store.user_generations(user.id)):
            assert time.monotonic() < deadline, "the last job waited for the refused ones"
            await asyncio.sleep(0.05)
        states = sorted(g.state for g in await core.store.user_generations(user.id))
    assert states == ["done"] + ["queued"] * MAX_SUBMITTING
