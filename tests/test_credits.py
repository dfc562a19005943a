"""Credits through the running bot (store, tracker, service) against the fake Astria: the
defaults, holds that commit with their job, capture on delivery, release on failure, cancel,
/delete and bans, restarts at the awkward moments, and the console's view of it all."""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot import doctor
from bot.app import running_core
from bot.chat.base import Core
from bot.chat.console import ConsoleNotifier
from bot.config import Settings, load_settings
from bot.core.errors import UserError
from bot.core.ledger import Entry
from bot.core.records import ChatTarget, GenerationState, JobKind, User
from bot.core.service import IncomingPhoto
from tests.conftest import chat
from tests.fakes.astria_server import FakeAstria
from tests.processes import BotProcess, astria_bot_env

CONSOLE = ChatTarget("console", "console")
PROMPTS = "/tunes/666678/prompts"


def paid(make_settings: Callable[..., Settings], **overrides: object) -> Settings:
    """A charging bot: a training costs 50, an image 1; no limits unless asked for."""
    values: dict[str, object] = {
        "credits": "on",
        "price_training": 50,
        "price_image": 1,
        "limit_running_prompts": 0,
        "limit_running_trainings": 0,
        "limit_images_per_day": 0,
        "limit_trainings_per_day": 0,
    }
    return make_settings(**{**values, **overrides})


@contextlib.asynccontextmanager
async def bot(settings: Settings, out: io.StringIO | None = None) -> AsyncIterator[Core]:
    """The core with a console notifier (results are "delivered" when printed)."""
    async with running_core(settings) as core:
        core.tracker.register_notifier("console", ConsoleNotifier(out or io.StringIO()))
        await core.start_jobs()
        yield core


async def trained_user(core: Core, photo_dir: Path, name: str = "ann") -> User:
    user = await core.service.user("console", name)
    photos = [IncomingPhoto(p.read_bytes(), p.name) for p in sorted(photo_dir.iterdir())]
    await core.service.add_photos(user, photos)
    await core.service.start_training(user, "man", CONSOLE)
    await core.tracker.wait_idle()
    return await core.service.user("console", name)


async def balance(core: Core, user: User) -> int:
    return await core.service.credits.ledger.balance(user.key)


async def kinds(core: Core, user: User) -> list[Entry]:
    """Every ledger row of the user, oldest first (captures included)."""
    rows = await core.store.fetch(
        "SELECT kind FROM ledger WHERE account = ? ORDER BY id", (user.key,)
    )
    return [Entry(row[0]) for row in rows]


# -- the defaults ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "charged"),
    [
        ({"astria_api_key": "sd_x"}, True),  # open to everyone, hosted Astria: on
        ({"local_worker_url": "http://gpu:7860"}, True),  # a GPU worker elsewhere: on
        ({}, False),  # the in-process worker (one machine, offline default): off
        ({"astria_api_key": "sd_x", "allowed_ids": "telegram:1"}, False),  # a private bot: off
        ({"credits": "on"}, True),
        ({"astria_api_key": "sd_x", "credits": "off"}, False),
    ],
)
def test_credits_default_to_on_for_an_open_bot_with_a_paid_backend(
    values: dict[str, str], charged: bool
) -> None:
    settings = load_settings(**values)
    assert settings.credits_enabled is charged


def test_admins_are_never_charged_and_the_console_only_when_asked() -> None:
    auto = load_settings(astria_api_key="sd_x", admin_ids="telegram:1")
    assert auto.never_charged("telegram:1") and auto.never_charged("console:ann")
    assert not auto.never_charged("telegram:2")
    on = load_settings(credits="on", admin_ids="telegram:1")
    assert on.never_charged("telegram:1") and not on.never_charged("console:ann")


# -- holds, captures, releases -----------------------------------------------------------------


async def test_fifty_imagines_at_once_with_credits_for_ten_make_exactly_ten(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    settings = paid(make_settings, free_credits=50 + 10 * 4)
    async with bot(settings) as core:
        user = await trained_user(core, photo_dir)
        assert await balance(core, user) == 40
        results = await asyncio.gather(
            *(core.service.generate(user, f"astronaut {n}", CONSOLE) for n in range(50)),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, UserError)]
        assert len(refused) == 40 and len(results) == 50
        assert "A set of 4 images costs 4 credits; you have 0 credits." in refused[0].message
        await core.tracker.wait_idle()
        assert await balance(core, user) == 0
        generations = await core.store.user_generations(user.id)
        assert [g.state for g in generations] == [GenerationState.DONE] * 10
        entries = await kinds(core, user)
        assert entries.count(Entry.HOLD) == 1 + 10 == entries.count(Entry.CAPTURE)
        assert entries.count(Entry.RELEASE) == 0
        spent = await core.service.credits.ledger.totals()
        assert spent[Entry.CAPTURE] == 50 + 40
    assert len(fake_astria.find_requests("POST", PROMPTS)) == 10


async def test_a_training_holds_its_price_and_a_failed_one_costs_nothing(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    settings = paid(make_settings, free_credits=60)
    fake_astria.fail_next("POST", "/tunes", 422, {"error": "Images are too blurry"})
    out = io.StringIO()
    async with bot(settings, out) as core:
        user = await core.service.user("console", "ann")
        photos = [IncomingPhoto(p.read_bytes(), p.name) for p in sorted(photo_dir.iterdir())]
        await core.service.add_photos(user, photos)
        await core.service.start_training(user, "man", CONSOLE)
        assert await balance(core, user) == 10  # held while it runs
        await core.tracker.wait_idle()
        assert "Images are too blurry" in out.getvalue()
        assert "The 50 credits held for it are back in your balance" in out.getvalue()
        assert await balance(core, user) == 60
        await core.service.start_training(user, "man", CONSOLE)  # the photos are kept
        await core.tracker.wait_idle()
        assert await balance(core, user) == 10
        assert (await kinds(core, user))[-2:] == [Entry.HOLD, Entry.CAPTURE]


async def test_a_backend_failure_after_the_hold_releases_it_and_says_so(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    out = io.StringIO()
    async with bot(paid(make_settings, free_credits=58), out) as core:
        user = await trained_user(core, photo_dir)
        fake_astria.fail_next("POST", PROMPTS, 422, {"error": "Prompt is too spicy"})
        await core.service.generate(user, "on a beach", CONSOLE)
        assert await balance(core, user) == 4
        await core.tracker.wait_idle()
        assert await balance(core, user) == 8
    said = out.getvalue()
    assert "Prompt is too spicy" in said
    assert "The 4 credits held for it are back in your balance: it cost you nothing." in said


async def test_cancel_and_delete_give_the_holds_back_and_the_balance_outlives_delete(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    async with bot(paid(make_settings, free_credits=70)) as core:
        user = await trained_user(core, photo_dir)
        fake_astria.prompt_seconds = 3600  # prompts stay running
        await core.service.generate(user, "a knight", CONSOLE)
        assert await balance(core, user) == 16
        assert "Cancelled: image #1." in await core.service.cancel(user)
        assert await balance(core, user) == 20
        await core.service.generate(user, "a queen", CONSOLE)
        await core.service.generate(user, "a bishop", CONSOLE)
        assert await balance(core, user) == 12
        await core.service.delete_everything(user)
        assert await balance(core, user) == 20  # both holds back; the credits stay theirs
        again = await core.service.user("console", "ann")
        assert await balance(core, again) == 20  # a new user row, the same account


async def test_admins_are_not_charged(
    make_settings: Callable[..., Settings], photo_dir: Path
) -> None:
    settings = paid(make_settings, admin_ids="console:boss")
    async with bot(settings) as core:
        boss = await trained_user(core, photo_dir, "boss")
        await core.service.generate(boss, "a knight", CONSOLE)
        await core.tracker.wait_idle()
        assert await kinds(core, boss) == []
        assert "Nothing is charged for you here" in await core.service.account(boss)


# -- restarts ----------------------------------------------------------------------------------


async def test_restart_between_hold_and_submission(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    settings = paid(make_settings, free_credits=62)
    async with bot(settings) as core:
        user = await trained_user(core, photo_dir)
        await core.service.generate(user, "astronaut", CONSOLE)
        await core.tracker.stop()  # the process ends before the job's task ran at all
        assert await balance(core, user) == 8
    assert fake_astria.find_requests("POST", PROMPTS) == []

    out = io.StringIO()
    async with bot(settings, out) as core:  # a new process resumes it
        await core.tracker.wait_idle()
        assert await balance(core, user) == 8
        assert (await kinds(core, user))[-2:] == [Entry.HOLD, Entry.CAPTURE]
    assert len(fake_astria.find_requests("POST", PROMPTS)) == 1
    assert out.getvalue().count("4 saved") == 1


async def test_restart_between_result_and_capture(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    """The images are in, but the chat that asked is not there to take them (its frontend is
    down): the hold waits. After the restart they are delivered once and captured once."""
    settings = paid(make_settings, free_credits=62)
    async with bot(settings) as core:
        user = await trained_user(core, photo_dir)
        await core.service.generate(user, "astronaut", ChatTarget("telegram", "42"))
        await core.tracker.wait_idle()  # no Telegram frontend: the result waits
        [generation] = await core.store.user_generations(user.id)
        assert generation.state == GenerationState.DONE
        assert await balance(core, user) == 8

    class Telegram(ConsoleNotifier):
        delivered = 0

        async def send_images(self, delivery, generation, files):  # type: ignore[no-untyped-def]
            Telegram.delivered += 1

    for _ in range(2):  # delivered on the first restart; nothing again on the second
        async with running_core(settings) as core:
            core.tracker.register_notifier("telegram", Telegram(io.StringIO()))
            await core.start_jobs()
            await core.tracker.wait_idle()
            assert await balance(core, user) == 8
    assert Telegram.delivered == 1
    async with running_core(settings) as core:
        assert (await kinds(core, user)).count(Entry.CAPTURE) == 2  # the training and the set


async def test_a_crash_between_delivery_and_capture_is_mended_at_start(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    """What a crash right after `mark_delivered` leaves: a delivered set whose hold is open.
    The next start captures it, once."""
    settings = paid(make_settings, free_credits=62)
    async with bot(settings) as core:
        user = await trained_user(core, photo_dir)
        fake_astria.prompt_seconds = 3600
        started = await core.service.generate(user, "astronaut", CONSOLE)
        await core.tracker.stop_job(JobKind.GENERATION, started.generation.id)
        await core.store.update_generation(started.generation.id, state=GenerationState.DONE)
        await core.store.mark_delivered(started.delivery.id)
    for _ in range(2):
        async with bot(settings) as core:
            assert await balance(core, user) == 8
            assert (await kinds(core, user)).count(Entry.CAPTURE) == 2


@pytest.mark.slow
def test_a_killed_bot_neither_loses_nor_doubles_a_hold(
    fake_astria: FakeAstria, photo_dir: Path, tmp_path: Path
) -> None:
    """SIGKILL (no clean-up at all) while a charged training runs; the restart finishes it."""
    env = astria_bot_env(fake_astria, tmp_path / "data", CREDITS="on", FREE_CREDITS="54")
    fake_astria.hold_training()
    first = BotProcess(["chat"], env, tmp_path, stdin=True)
    first.send(f"/photos {photo_dir}\n/train man\n/credits\n")
    first.wait_for(r"Training .* in progress")
    first.wait_for(r"Your balance: 4 credits\.")  # the training's 50 are held
    first.popen.send_signal(signal.SIGKILL)
    first.popen.wait(30)

    fake_astria.release_training()
    second = BotProcess(["chat"], env, tmp_path, stdin=True)
    second.wait_for(r"is ready")
    second.send("/imagine astronaut\n/wait\n/credits\n")
    after = second.close_input_and_wait()
    assert after.count("is ready") == 1 and len(fake_astria.tunes) == 1
    assert after.count("4 saved") == 1
    assert "Your balance: 0 credits." in after
    assert "-50 for training #1, delivered" in after and "-4 for image set #1, delivered" in after


# -- the console -------------------------------------------------------------------------------


async def test_console_shows_the_balance_prices_movements_and_refusals(
    make_settings: Callable[..., Settings], photo_dir: Path
) -> None:
    settings = paid(make_settings, free_credits=55, limit_running_prompts=1)
    output = await chat(
        settings,
        f"/photos {photo_dir}\n/train man\n/wait\n/credits\nclear\n/imagine a\n/imagine b\n"
        "/wait\n/imagine c\n/buy\n/grant console:ann 5\n",
    )
    assert "Your balance: 5 credits." in output
    assert "Training a model costs 50 credits; a set of 4 images 4 credits." in output
    assert "+55 welcome credits" in output
    assert "-50 for training #1, delivered" in output
    assert "Make 4 images of “clear” with man #1? It costs 4 credits; you have 5 credits." in output
    assert "Send /imagine clear to make them." in output
    assert "1 image set on its way; 1 at a time is the limit" in output  # /imagine b
    assert "A set of 4 images costs 4 credits; you have 1 credit." in output  # /imagine c
    assert "bought in Telegram (/buy) or Discord (/buy)" in output
    assert "That command is for the bot's admins." in output
    assert output.count("4 saved") == 1  # "clear" made nothing


async def test_the_console_is_free_under_auto(
    make_settings: Callable[..., Settings], photo_dir: Path
) -> None:
    settings = make_settings(credits="auto")
    assert settings.credits_enabled  # open, with (fake) hosted Astria: charging ...
    output = await chat(settings, "/credits\n")
    assert "Nothing is charged for you here" in output  # ... but not at the console


# -- doctor ------------------------------------------------------------------------------------


def test_doctor_warns_about_an_open_bot_that_charges_nothing() -> None:
    open_free = load_settings(astria_api_key="sd_x", telegram_bot_token="1:x", credits="off")
    check = doctor.credits(open_free)
    assert check.ok and check.warning is not None and "open to everyone" in check.warning
    out = io.StringIO()
    assert doctor.report([check], out) == 0
    assert out.getvalue().startswith("warn  credits: the bot is open to everyone")

    in_process = load_settings(telegram_bot_token="1:x")  # auto, but nothing paid: off
    assert "CREDITS=auto" in (doctor.credits(in_process).warning or "")
    private = load_settings(telegram_bot_token="1:x", allowed_ids="telegram:1", credits="off")
    assert doctor.credits(private).warning is None
    charging = load_settings(astria_api_key="sd_x", telegram_bot_token="1:x")
    assert doctor.credits(charging).warning is None
    assert "a training costs 50, an image 1" in doctor.credits(charging).detail
    nothing_on_sale = load_settings(astria_api_key="sd_x", credit_packages="")
    assert "nothing is on sale" in (doctor.credits(nothing_on_sale).warning or "")
