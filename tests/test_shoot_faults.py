"""Shoots under faults (issues 14 and 15): a stop at any point of a shoot's delivery neither
lets a delivered image go uncharged nor charges one twice, and the retention sweep does not
race a user who comes back while it runs."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from backends.astria import LIST_PAGE_SIZE
from bot.app import running_core
from bot.config import Settings
from bot.core.ledger import Entry
from bot.core.records import JobKind
from bot.core.retention import Removed
from bot.core.store import utcnow
from tests.conftest import chat
from tests.fakes.astria_server import FakeAstria
from tests.test_console_shoots import add_travel, rome_only, saved_images, tiny_worker_settings
from tests.test_delete_proof import files_under, rows_per_table

CREDITS = {"credits": "on", "free_credits": 50 + 8, "price_training": 50, "price_image": 1}


def forget_captures(database: Path) -> int:
    """The ledger as a stop between marking shots delivered and capturing their holds leaves
    it: the captures (0-credit rows) not written yet. The append-only trigger is lifted only
    to stage that state, and put back as it was."""
    with sqlite3.connect(database) as db:
        (trigger,) = db.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'ledger_is_append_only_delete'"
        ).fetchone()
        db.execute("DROP TRIGGER ledger_is_append_only_delete")
        gone = db.execute(
            "DELETE FROM ledger WHERE kind = ? AND job_kind = ?", (Entry.CAPTURE, JobKind.SHOOT)
        ).rowcount
        db.execute(trigger)
    return gone


async def stopped_after_rome(
    settings: Settings, photo_dir: Path, fake_astria: FakeAstria
) -> tuple[Settings, str]:
    """A trained model, then `/shoot travel` stopped once Rome's 3 images were delivered."""
    add_travel(fake_astria)
    await chat(settings, f"/photos {photo_dir}\n/train man\n/wait\n")
    return settings, await rome_only(settings, fake_astria, [("images saved:", "/quit\n")])


def balance(output: str) -> int:
    found = re.findall(r"Your balance: (\d+) credits\.", output)
    assert found, output
    return int(found[-1])


async def test_a_stop_between_delivering_and_capturing_still_charges_those_images_once(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    settings, first = await stopped_after_rome(make_settings(**CREDITS), photo_dir, fake_astria)
    assert len(saved_images(first)) == 3
    assert forget_captures(settings.database_path) == 3  # Rome's, delivered before the stop

    fake_astria.hold_prompts_with(None)
    second = await chat(settings, "")  # the restart: Kyoto comes, then the ZIP
    after = await chat(settings, "/credits\n")

    assert len(saved_images(second)) == 3 and "Travel is done: 6 images." in second
    assert balance(after) == 8 - 6  # every delivered image paid for, none given back
    with sqlite3.connect(settings.database_path) as db:
        kinds = dict(
            db.execute(
                "SELECT kind, COUNT(*) FROM ledger WHERE job_kind = ? GROUP BY kind",
                (JobKind.SHOOT,),
            ).fetchall()
        )
    assert kinds == {"hold": 6, "capture": 6}


async def test_a_user_who_comes_back_while_the_sweep_waits_for_them_keeps_everything(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    settings = make_settings(keep_training_photos=True)
    assert "is ready" in await chat(settings, f"/photos {photo_dir}\n/train man\n/wait\n")
    later = utcnow() + timedelta(days=31)  # inactive as the sweep starts
    async with running_core(settings) as core:
        service = core.service
        user = await service.store.get_user(1)  # the console's one user
        assert user is not None
        async with service._lock(user):  # an operation of theirs is under way ...
            sweeping = asyncio.create_task(service.retention.sweep(later))
            await asyncio.wait({sweeping}, timeout=2)  # (unlocked, the sweep is done by now)
            await service.retention.seen(user, later)  # ... since they came back
        removed = await sweeping
    assert removed == Removed()
    assert fake_astria.tunes  # their model stays, here and on the backend
    rows = rows_per_table(settings.database_path)
    assert rows["tunes"] == 1 and rows["photos"] > 0


async def test_a_train_and_shoot_whose_training_fails_ends_the_shoot_and_gives_all_back(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    travel = add_travel(fake_astria)
    settings = make_settings(**CREDITS)
    fake_astria.fail_next("POST", f"/p/{travel['id']}/tunes", 422, {"base": ["bad photos"]})
    output = await chat(settings, f"/photos {photo_dir}\n/train man travel\n/wait\n/status\n")
    after = await chat(settings, "/credits\n/status\n")

    assert "Travel failed: its model is gone or its training failed." in output
    assert balance(after) == 58  # the training's hold and the shoot's six, all given back
    assert "Travel" not in after.split("Your balance")[0]
    with sqlite3.connect(settings.database_path) as db:
        (state,) = db.execute("SELECT state FROM shoots").fetchone()
    assert state == "failed"


async def test_train_and_shoot_with_a_pack_of_no_prompts_for_the_class_is_refused_whole(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    empty = fake_astria.packs.add_pack("empty", "Empty", {"man": [], "woman": ["ohwx woman"]})
    settings = make_settings(**CREDITS)
    output = await chat(settings, f"/photos {photo_dir}\n/train man empty\n/credits\n")

    assert "Empty has no prompts for a man." in output
    assert not re.search(r"Training .* started", output)
    assert balance(output) == 58  # nothing held
    assert not fake_astria.find_requests("POST", f"/p/{empty['id']}/tunes")
    assert not fake_astria.find_requests("POST", "/tunes")
    with sqlite3.connect(settings.database_path) as db:
        assert db.execute("SELECT COUNT(*) FROM shoots").fetchone() == (0,)


@pytest.mark.slow
async def test_a_shoot_whose_prompts_fill_more_than_one_page_of_the_list_gets_them_all(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    texts = [f"ohwx man, scene {number}" for number in range(LIST_PAGE_SIZE + 5)]
    big = fake_astria.packs.add_pack("big", "Big", {"man": texts}, num_images=1)
    settings = make_settings()
    output = await chat(settings, f"/photos {photo_dir}\n/train man\n/wait\n/shoot big\n/wait\n")

    assert output.count(f"Big is done: {len(texts)} images.") == 1
    assert len(set(saved_images(output))) == len(texts)  # each once, past the first page too
    pages = [r for r in fake_astria.find_requests("GET", "/tunes/") if "before_id" in r.query]
    assert pages  # Astria's answer named no prompts: they were listed, page after page
    assert len(fake_astria.find_requests("POST", f"/p/{big['id']}/tunes")) == 1


@pytest.mark.slow
async def test_delete_after_a_shoot_leaves_none_of_it_on_our_worker(
    tmp_path: Path, photo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tiny_worker_settings(tmp_path, monkeypatch)
    shoot = f"/photos {photo_dir}\n/train man\n/wait\n/shoot quick-test\n/wait\n"
    assert "Quick test is done: 2 images." in await chat(settings, shoot)
    worker_db = settings.data_dir / "worker" / "worker.sqlite3"
    assert rows_per_table(worker_db)["prompts"] == 2  # the pack's, done, images on the worker

    assert "Deleted" in await chat(settings, "/delete confirm\n")

    left = {table: n for table, n in rows_per_table(worker_db).items() if n}
    assert left == {"pack_runs": 1}  # ids and a callback URL: no prompt text, no image
    assert files_under(settings.data_dir / "worker", worker_db) == []
    assert not (settings.data_dir / "shoots").exists() or not any(
        (settings.data_dir / "shoots").iterdir()
    )


async def test_the_same_pack_shot_twice_at_once_gives_each_shoot_its_own_prompts(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    travel = add_travel(fake_astria)
    settings = make_settings(credits="on", free_credits=50 + 12, price_training=50, price_image=1)
    await chat(settings, f"/photos {photo_dir}\n/train man\n/wait\n")
    [tune_id] = fake_astria.tunes
    fake_astria.delay_next("GET", f"/tunes/{tune_id}/prompts", 1)  # the first looks up late
    output = await chat(settings, "/shoot travel\n/shoot travel\n/wait\n")
    after = await chat(settings, "/credits\n")

    assert len(fake_astria.find_requests("POST", f"/p/{travel['id']}/tunes")) == 2
    assert output.count("Travel is done: 6 images.") == 2  # not 12 and a failure
    assert len(set(saved_images(output))) == 12
    assert balance(after) == 0  # twelve images delivered, twelve paid for


async def test_shoot_with_junk_or_a_path_for_a_pack_is_answered_and_asks_for_nothing_odd(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    add_travel(fake_astria)
    settings = make_settings(**CREDITS)
    await chat(settings, f"/photos {photo_dir}\n/train man\n/wait\n")
    junk = ["../tunes", "1/../../tunes", "99999999999999999999999", "-3", "%2e%2e", "🙂"]
    output = await chat(settings, "".join(f"/shoot {word}\n" for word in junk) + "/credits\n")

    for word in junk:
        assert f"There is no pack called “{word}”. /packs lists them." in output
    assert balance(output) == 8
    assert not fake_astria.find_requests("POST", "/p/")


async def test_a_stop_between_a_shoot_failing_and_its_zip_still_sends_the_zip_once(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    settings, first = await stopped_after_rome(make_settings(**CREDITS), photo_dir, fake_astria)
    with sqlite3.connect(settings.database_path) as db:  # what a backend refusal then wrote
        db.execute("UPDATE shoots SET state = 'failed', error = 'the model was deleted'")
    second = await chat(settings, "")  # the restart, before the ZIP went out
    after = await chat(settings, "")

    archive = re.search(r"ZIP of Travel: (\S+)", second)
    assert archive is not None
    with zipfile.ZipFile(archive.group(1)) as zipped:
        assert len(zipped.namelist()) == len(saved_images(first)) == 3
    assert second.count("Travel failed: the model was deleted") == 1
    assert "ZIP of Travel" not in after and "Travel failed" not in after
    assert balance(await chat(settings, "/credits\n")) == 8 - 3


async def test_retention_leaves_a_user_whose_shoot_still_runs_for_a_later_sweep(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    settings, _ = await stopped_after_rome(make_settings(**CREDITS), photo_dir, fake_astria)
    async with running_core(settings) as core:  # Kyoto is still being made
        removed = await core.service.retention.sweep(utcnow() + timedelta(days=31))

    assert removed == Removed()
    rows = rows_per_table(settings.database_path)
    assert rows["shoots"] == 1 and rows["shots"] == 2 and rows["tunes"] == 1
    assert fake_astria.tunes and len(fake_astria.prompts) == 2
    assert len(list((settings.data_dir / "shoots" / "1").iterdir())) == 3  # Rome's images
