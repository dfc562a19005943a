"""Use cases through the console frontend: cancel, delete, models, ownership, allow-list."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.app import running_core
from bot.config import Settings
from bot.core.errors import UserError
from bot.core.records import ChatTarget
from tests.conftest import chat
from tests.fakes.astria_server import FakeAstria

TRAIN = "/photos {photos}\n/train man\n/wait\n"


async def test_cancel_stops_training_and_deletes_it_on_the_backend(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    fake_astria.hold_training()
    output = await chat(make_settings(), f"/photos {photo_dir}\n/train man\n/status\n/cancel\n")
    assert "Cancelled: training of man #1." in output
    assert fake_astria.tunes == {}  # deleted remotely
    output = await chat(make_settings(), "/status\n/cancel\n")
    assert "Nothing is running." in output
    assert "Photos waiting for /train: 5." in output  # back in the set, for a new /train
    assert "Dropped your 5 pending photos" in output


async def test_cancel_without_jobs_drops_pending_photos(
    make_settings: Callable[..., Settings], photo_dir: Path
) -> None:
    output = await chat(make_settings(), f"/photos {photo_dir}\n/cancel\n/status\n")
    assert "Dropped your 5 pending photos" in output
    assert "Photos waiting for /train: 0." in output
    assert not any((make_settings().data_dir / "photos").rglob("*.jpg"))


async def test_delete_removes_everything_here_and_remotely(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    settings = make_settings()
    output = await chat(
        settings, TRAIN.format(photos=photo_dir) + "/imagine a knight\n/wait\n/delete\n/delete\n"
    )
    assert "Send /delete confirm" in output
    assert "Deleted 5 photos, 1 models and 1 image jobs" in output
    assert fake_astria.tunes == {} and fake_astria.prompts == {}
    assert not [p for p in settings.data_dir.rglob("*") if p.suffix in (".jpg", ".png")]
    assert "You have no models yet" in await chat(settings, "/models\n")


async def test_delete_keeps_everything_when_the_backend_fails(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    settings = make_settings()
    await chat(settings, TRAIN.format(photos=photo_dir))
    fake_astria.fail_next("DELETE", "/tunes/", 500, times=10)
    output = await chat(settings, "/delete confirm\n/models\n")
    assert "kept everything here" in output
    assert "man #1: ready" in output


async def test_models_can_be_switched_and_are_private(
    make_settings: Callable[..., Settings], tmp_path: Path, fake_astria: FakeAstria
) -> None:
    from tests.conftest import write_photos

    settings = make_settings()
    first = write_photos(tmp_path / "a", 4)
    second = write_photos(tmp_path / "b", 4, first_seed=20)
    output = await chat(
        settings,
        TRAIN.format(photos=first)
        + f"/photos {second}\n/train woman Anna\n/wait\n"
        + "/models\n/models 1\n/imagine at sea\n/wait\n",
    )
    assert "Anna: ready" in output and "(active)" in output
    assert "man #1 is now your active model." in output
    [post] = fake_astria.find_requests("POST", "/tunes/666678/prompts")
    first_id = min(fake_astria.tunes)
    assert post.form["prompt[text]"] == [f"<lora:{first_id}:0.8> ohwx man at sea"]

    async with running_core(settings) as core:
        stranger = await core.service.user("telegram", "999")
        with pytest.raises(UserError, match="no model with that number"):
            await core.service.choose_model(stranger, 1)
        with pytest.raises(UserError, match="no model yet"):
            await core.service.generate(stranger, "hi", ChatTarget("telegram", "999"))


async def test_allow_list_refuses_strangers(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(allowed_ids="telegram:1", admin_ids="discord:7")
    async with running_core(settings) as core:
        await core.service.user("telegram", "1")
        await core.service.user("discord", "7")
        with pytest.raises(UserError, match="private"):
            await core.service.user("telegram", "2")


async def test_training_is_refused_in_groups(make_settings: Callable[..., Settings]) -> None:
    async with running_core(make_settings()) as core:
        user = await core.service.user("telegram", "1")
        with pytest.raises(UserError, match="private chat"):
            await core.service.start_training(user, "man", ChatTarget("telegram", "-5", False))
        with pytest.raises(UserError, match="not a class word"):
            await core.service.start_training(user, "m4n!", ChatTarget("telegram", "1"))


async def test_imagine_racing_a_delete_leaves_nothing_behind(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    """/imagine sent while /delete waits on the image service is refused, not left running."""
    settings = make_settings()
    await chat(settings, TRAIN.format(photos=photo_dir))
    fake_astria.delay_next("DELETE", "/tunes/", 1.0)
    async with running_core(settings) as core:
        await core.start_jobs()
        user = await core.service.user("console", getpass.getuser())
        deleting = asyncio.create_task(core.service.delete_everything(user))
        await asyncio.sleep(0.3)  # the delete is now waiting on the image service
        with pytest.raises(UserError, match="no model"):
            await core.service.generate(user, "a knight", ChatTarget("console", "console"))
        assert "Deleted 5 photos, 1 models" in await deleting
    assert fake_astria.tunes == {} and fake_astria.prompts == {}
