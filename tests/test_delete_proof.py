"""/delete leaves nothing of the user (issue 15): no file under the data folder, no row in any
table of the database, nothing on the image service; proven on a full history (photos, a
model, a generation with its images, buttons, consent)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config import Settings
from tests.conftest import chat
from tests.fakes.astria_server import FakeAstria


def rows_per_table(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as db:
        tables = [
            name
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not name.startswith("sqlite_")
        ]
        return {
            table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in tables
        }


def files_under(folder: Path, database: Path) -> list[Path]:
    """Every file but the database's own (checked row by row above)."""
    own = {database.name, f"{database.name}-wal", f"{database.name}-shm"}
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in own)


async def test_after_delete_nothing_of_the_user_remains(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    # KEEP_TRAINING_PHOTOS: the trained model's photos stay, so /delete has them to remove
    settings = make_settings(consent_required=True, keep_training_photos=True)
    history = await chat(
        settings,
        f"/photos {photo_dir}\n/train man\n/consent\n/train man\n/wait\n"
        "/imagine astronaut on the moon\n/wait\n",
    )
    assert "is ready" in history
    data = settings.data_dir
    before = rows_per_table(settings.database_path)
    assert before["photos"] and before["tunes"] and before["generations"] and before["users"]
    assert files_under(
        data, settings.database_path
    )  # the photos and the delivered images are on disk

    deleted = await chat(settings, "/delete confirm\n")
    assert "Deleted" in deleted

    after = rows_per_table(settings.database_path)
    bookkeeping = ("users", "retention_runs")  # when the retention sweep ran: nobody's data
    assert {table: n for table, n in after.items() if n and table not in bookkeeping} == {}, after
    with sqlite3.connect(settings.database_path) as db:
        users = db.execute("SELECT id, active_tune_id, consented_at FROM users").fetchall()
    # the console makes its terminal user anew after /delete (its language kept): a row with
    # nothing of the old one (no model, no consent: asked again)
    assert [(tune, consent) for _, tune, consent in users] in ([], [(None, None)]), users
    assert files_under(data, settings.database_path) == []
    assert fake_astria.tunes == {} and fake_astria.prompts == {}


@pytest.fixture
def worker_settings(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    """Settings for the in-process tiny worker, trained for two steps at 64 px: seconds on a
    CPU."""
    for name, value in {
        "WORKER_DEVICE": "cpu",
        "WORKER_COMPILE": "off",
        "WORKER_TRAIN_STEPS": "2",
        "WORKER_TRAIN_RESOLUTION": "64",
    }.items():
        monkeypatch.setenv(name, value)
    return lambda **overrides: make_settings(backend="local", astria_api_key=None, **overrides)


@pytest.mark.slow
async def test_after_delete_nothing_remains_on_our_worker_either(
    worker_settings: Callable[..., Settings], photo_dir: Path
) -> None:
    settings = worker_settings(keep_training_photos=True)
    history = await chat(
        settings, f"/photos {photo_dir}\n/train man\n/wait\n/imagine a knight\n/wait\n"
    )
    assert "is ready" in history
    worker_db = settings.data_dir / "worker" / "worker.sqlite3"
    worker_rows = rows_per_table(worker_db)
    assert worker_rows["tunes"] == 1 and worker_rows["prompts"] == 1
    assert files_under(settings.data_dir / "worker", worker_db)  # photos, model, images

    assert "Deleted 5 photos, 1 models" in await chat(settings, "/delete confirm\n")

    after = rows_per_table(settings.database_path)
    bookkeeping = ("users", "retention_runs")
    assert {table: n for table, n in after.items() if n and table not in bookkeeping} == {}
    assert {table: n for table, n in rows_per_table(worker_db).items() if n} == {}
    assert files_under(settings.data_dir / "worker", worker_db) == []
    bot_files = files_under(settings.data_dir, settings.database_path)
    assert [p for p in bot_files if not p.is_relative_to(settings.data_dir / "worker")] == []
