"""Retention (issue 15, bot/core/retention.py): training photos go once their model is trained,
an inactive user's media goes here and on the image service, the sweep survives a restart, and
the user is told once. The clock is the sweep's `now` argument."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from backends.astria import AstriaClient
from bot.app import running_core
from bot.config import Settings
from bot.core.records import ChatTarget, TuneState
from bot.core.retention import Removed, Retention, RetentionConfig
from bot.core.store import Store, utcnow
from tests.conftest import FAKE_KEY, chat
from tests.fakes.astria_server import FakeAstria
from tests.test_console_shoots import add_travel
from tests.test_delete_proof import files_under, rows_per_table, worker_settings
from tests.worker_fixtures import until

HISTORY = "/photos {photos}\n/train man\n/wait\n/imagine astronaut on the moon\n/wait\n"
LATER = timedelta(days=31)
__all__ = ["worker_settings"]  # a fixture


def count(database: Path, table: str) -> int:
    return rows_per_table(database)[table]


def photo_files(data: Path) -> list[Path]:
    return sorted((data / "photos").rglob("*.jpg")) if (data / "photos").exists() else []


async def sweep_later(settings: Settings, days: float) -> Removed:
    """One sweep, `days` from now, with the bot's own wiring (its backend, its store)."""
    async with running_core(settings) as core:
        return await core.service.retention.sweep(utcnow() + timedelta(days=days))


async def test_training_photos_go_once_the_model_is_trained(
    make_settings: Callable[..., Settings], photo_dir: Path
) -> None:
    settings = make_settings(keep_training_photos=False)
    history = await chat(settings, f"/photos {photo_dir}\n/train man\n/wait\n")
    assert "is ready" in history
    assert count(settings.database_path, "photos") == 0
    assert photo_files(settings.data_dir) == []


async def test_keep_training_photos_keeps_them_until_the_user_is_inactive(
    make_settings: Callable[..., Settings], photo_dir: Path
) -> None:
    settings = make_settings(keep_training_photos=True)
    await chat(settings, f"/photos {photo_dir}\n/train man\n/wait\n")
    assert count(settings.database_path, "photos") == 5
    assert (await sweep_later(settings, 1)).photos == 0  # active yesterday: nothing goes
    assert len(photo_files(settings.data_dir)) == 5
    assert (await sweep_later(settings, 31)).photos == 5
    assert photo_files(settings.data_dir) == []


async def test_an_inactive_users_media_goes_here_and_on_astria_and_they_are_told_once(
    make_settings: Callable[..., Settings],
    photo_dir: Path,
    fake_astria: FakeAstria,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(keep_training_photos=False)
    assert "is ready" in await chat(settings, HISTORY.format(photos=photo_dir))
    assert fake_astria.tunes and fake_astria.prompts
    assert (settings.data_dir / "images").exists()

    nothing_yet = await sweep_later(settings, 29)
    assert nothing_yet == Removed()
    assert fake_astria.tunes

    with caplog.at_level(logging.INFO, logger="bot.core.retention"):
        removed = await sweep_later(settings, 31)
    assert removed == Removed(users=1, photos=0, models=1, images=1)
    assert fake_astria.tunes == {} and fake_astria.prompts == {}
    rows = rows_per_table(settings.database_path)
    assert rows["tunes"] == rows["generations"] == rows["photos"] == rows["deliveries"] == 0
    assert rows["users"] == 1  # language, consent and credits stay
    assert files_under(settings.data_dir, settings.database_path) == []
    swept = [r.getMessage() for r in caplog.records if "sweep removed" in r.getMessage()]
    assert swept == ["retention sweep removed 1 users, 0 photos, 1 models, 1 images"]
    assert str(settings.data_dir) not in caplog.text and FAKE_KEY not in caplog.text

    assert await sweep_later(settings, 32) == Removed()  # a second sweep finds nothing

    back = await chat(settings, "/status\n")
    assert back.count("Welcome back! You had not used me for 30 days") == 1
    assert "1 models and 1 image sets" in back
    assert "Welcome back" not in await chat(settings, "/status\n")  # told once


async def test_an_inactive_users_shoots_go_too(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    """A shoot's images, ZIP, rows and prompts on the backend are media like any other."""
    add_travel(fake_astria)
    settings = make_settings(keep_training_photos=False)
    history = await chat(settings, f"/photos {photo_dir}\n/train man\n/wait\n/shoot 1\n/wait\n")
    assert "Travel is done: 6 images." in history
    assert len(fake_astria.prompts) == 2 and (settings.data_dir / "shoots").exists()

    removed = await sweep_later(settings, 31)
    assert removed == Removed(users=1, photos=0, models=1, images=2)
    assert fake_astria.tunes == {} and fake_astria.prompts == {}
    rows = rows_per_table(settings.database_path)
    assert rows["shoots"] == rows["shots"] == rows["deliveries"] == rows["tunes"] == 0
    assert files_under(settings.data_dir, settings.database_path) == []


async def test_the_retention_days_can_be_changed_or_turned_off(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    assert "is ready" in await chat(
        make_settings(keep_training_photos=False), f"/photos {photo_dir}\n/train man\n/wait\n"
    )
    assert (
        await sweep_later(make_settings(retention_days=0, keep_training_photos=False), 400)
        == Removed()
    )
    assert (
        await sweep_later(make_settings(retention_days=7, keep_training_photos=False), 8)
    ).models == 1
    assert fake_astria.tunes == {}


async def _user_with_a_model(store: Store, fake: FakeAstria, name: str) -> int:
    """A user with a trained model on the fake Astria and a kept photo, as the bot stores it."""
    user = await store.get_or_create_user("telegram", name, name)
    remote = fake.add_tune(f"title-{name}")
    path = f"photos/{user.id}/{name}.jpg"
    (store.data_dir / path).parent.mkdir(parents=True, exist_ok=True)
    (store.data_dir / path).write_bytes(b"jpeg")
    photo = await store.add_photo(user.id, sha256=name, width=1, height=1, size_bytes=4, path=path)
    tune = await store.create_tune(
        user.id,
        title=f"title-{name}",
        class_name="man",
        token="ohwx",
        label=None,
        photo_ids=[photo.id],
        target=ChatTarget("telegram", name, True),
    )
    await store.update_tune(tune.id, backend_id=remote["id"], state=TuneState.TRAINED)
    return int(remote["id"])


async def test_a_sweep_cut_short_by_a_restart_is_finished_by_the_next(
    tmp_path: Path, fake_astria: FakeAstria
) -> None:
    data = tmp_path / "data"
    config = RetentionConfig(days=30, keep_training_photos=True)
    store = await Store.open(data / "bot.sqlite3", data)
    first = await _user_with_a_model(store, fake_astria, "ann")
    second = await _user_with_a_model(store, fake_astria, "bob")
    later = utcnow() + LATER
    fake_astria.delay_next("DELETE", f"/tunes/{second}", 3)
    async with AstriaClient(FAKE_KEY, fake_astria.url) as backend:
        sweeping = asyncio.create_task(Retention(store, backend, config).sweep(later))

        async def deleting_bobs_model() -> bool:
            return bool(fake_astria.find_requests("DELETE", f"/tunes/{second}"))

        await until(deleting_bobs_model, "the sweep to reach bob's model")
        sweeping.cancel()  # the bot stops while the image service answers slowly
        await asyncio.gather(sweeping, return_exceptions=True)
    await store.close()
    assert first not in fake_astria.tunes  # ann was done before the stop
    assert count(data / "bot.sqlite3", "tunes") == 1  # bob's model is still here

    store = await Store.open(data / "bot.sqlite3", data)  # the restart
    try:
        async with AstriaClient(FAKE_KEY, fake_astria.url) as backend:
            retention = Retention(store, backend, config)
            assert await retention.due(later)  # the cut-short run does not count
            assert await retention.sweep(later) == Removed(users=1, photos=1, models=1)
            assert not await retention.due(later + timedelta(hours=23))
            assert await retention.due(later + timedelta(days=1))
            assert await retention.sweep(later + timedelta(days=1)) == Removed()
    finally:
        await store.close()
    assert fake_astria.tunes == {}
    assert photo_files(data) == []
    with sqlite3.connect(data / "bot.sqlite3") as db:
        runs = db.execute("SELECT finished_at IS NOT NULL FROM retention_runs").fetchall()
    assert runs == [(0,), (1,), (1,)]


@pytest.mark.slow
async def test_an_inactive_users_models_go_on_our_worker_too(
    worker_settings: Callable[..., Settings], photo_dir: Path
) -> None:
    settings = worker_settings(keep_training_photos=False)
    assert "is ready" in await chat(settings, HISTORY.format(photos=photo_dir))
    worker_db = settings.data_dir / "worker" / "worker.sqlite3"
    assert rows_per_table(worker_db)["tunes"] == 1
    assert files_under(settings.data_dir / "worker", worker_db)

    assert await sweep_later(settings, 31) == Removed(users=1, models=1, images=1)
    assert {table: n for table, n in rows_per_table(worker_db).items() if n} == {}
    assert files_under(settings.data_dir / "worker", worker_db) == []
    assert count(settings.database_path, "tunes") == 0


async def test_the_daily_timer_sweeps_once_a_day_and_a_restart_waits_for_the_rest(
    tmp_path: Path, fake_astria: FakeAstria
) -> None:
    data = tmp_path / "data"
    store = await Store.open(data / "bot.sqlite3", data)
    clock = [utcnow()]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) in (3, 4):
            raise asyncio.CancelledError  # the bot stops
        clock[0] += timedelta(seconds=seconds)

    try:
        async with AstriaClient(FAKE_KEY, fake_astria.url) as backend:
            retention = Retention(store, backend, RetentionConfig())
            with pytest.raises(asyncio.CancelledError):
                await retention.run_daily(lambda: clock[0], sleep)
            assert waits == [86400.0] * 3
            assert count(data / "bot.sqlite3", "retention_runs") == 3

            clock[0] += timedelta(hours=5)  # started again five hours after the last sweep
            with pytest.raises(asyncio.CancelledError):
                await Retention(store, backend, RetentionConfig()).run_daily(
                    lambda: clock[0], sleep
                )
            assert waits[3] == pytest.approx(19 * 3600)
            assert count(data / "bot.sqlite3", "retention_runs") == 3  # not run again yet
    finally:
        await store.close()
