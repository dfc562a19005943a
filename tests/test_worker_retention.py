"""WORKER_RETENTION_DAYS (issue 15, backends/local/sweep.py): the worker deletes prompts, tunes
and training photos unused that long, on the SQLite store and the fleet's PostgreSQL one; off
by default."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backends.base import SDXL_BASE_TUNE_ID
from backends.local.config import WorkerConfig
from backends.local.errors import ConfigError
from backends.local.records import JobState
from backends.local.store import JobStore, WorkerStore
from backends.local.sweep import Expired, expire_unused
from tests.test_worker_store_contract import open_store
from tests.worker_fixtures import started, until, worker_config

__all__ = ["open_store"]  # a fixture

NOW = datetime.now(UTC)


def ago(days: float) -> str:
    moment = NOW - timedelta(days=days)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
async def store(open_store: Callable[[], JobStore]) -> JobStore:
    """The SQLite store, and the fleet's PostgreSQL one (the same queries, in JobStore)."""
    store = open_store()
    await store.open()
    return store


def write(config: WorkerConfig, relative: str) -> str:
    path = config.files_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"bytes")
    return relative


async def tune(
    store: JobStore, config: WorkerConfig, title: str, trained_days_ago: float | None
) -> int:
    """A tune with two photos on disk and a model folder; trained that long ago (None: queued)."""
    photos = [write(config, f"uploads/{title}/{n}.jpg") for n in range(2)]
    fields = {
        "title": title,
        "name": "man",
        "token": "ohwx",
        "base_tune_id": SDXL_BASE_TUNE_ID,
        "model_type": "pti",
    }
    row = await store.create_tune(fields, photos, origin=None)
    (config.tunes_dir / str(row["id"])).mkdir(parents=True)
    (config.tunes_dir / str(row["id"]) / "lora.safetensors").write_bytes(b"model")
    if trained_days_ago is not None:
        await store.update_tune(row["id"], state=JobState.DONE, trained_at=ago(trained_days_ago))
    return int(row["id"])


async def prompt(store: JobStore, config: WorkerConfig, lora_tune_id: int, days_ago: float) -> int:
    """A finished prompt through the base model naming the tune's LoRA, with a result file."""
    row = await store.create_prompt(
        SDXL_BASE_TUNE_ID, {"text": "x", "lora_tune_id": lora_tune_id}, origin=None
    )
    image = write(config, f"prompts/{row['id']}/1.png")
    await store.update_prompt(
        row["id"],
        state=JobState.DONE,
        images=[image],
        created_at=ago(days_ago),
        finished_at=ago(days_ago),
    )
    return int(row["id"])


async def test_unused_tunes_old_prompts_and_old_photos_go(store: JobStore, tmp_path: Path) -> None:
    config = worker_config(tmp_path / "worker", retention_days=30)
    unused = await tune(store, config, "unused", trained_days_ago=40)
    in_use = await tune(store, config, "in-use", trained_days_ago=40)
    fresh = await tune(store, config, "fresh", trained_days_ago=1)
    queued = await tune(store, config, "queued", trained_days_ago=None)
    await store.update_tune(queued, created_at=ago(90), updated_at=ago(90))
    old_prompt = await prompt(store, config, in_use, days_ago=35)
    recent_prompt = await prompt(store, config, in_use, days_ago=5)

    expired = await expire_unused(store, config, NOW)

    assert expired == Expired(prompts=1, tunes=1, photos=4)
    assert await store.tune_ids() == {in_use, fresh, queued}
    assert await store.get_prompt(old_prompt) is None
    assert await store.get_prompt(recent_prompt) is not None
    assert not (config.tunes_dir / str(unused)).exists()
    assert not (config.files_dir / "uploads" / "unused").exists()
    assert not (config.files_dir / "prompts" / str(old_prompt)).exists()
    in_use_row = await store.get_tune(in_use)
    assert in_use_row is not None and in_use_row["images"] == []  # the model keeps working:
    assert (config.tunes_dir / str(in_use) / "lora.safetensors").exists()
    assert not (config.files_dir / "uploads" / "in-use").exists()  # its photos are gone
    for kept in ("fresh", "queued"):
        assert len(list((config.files_dir / "uploads" / kept).iterdir())) == 2
    assert (config.files_dir / "prompts" / str(recent_prompt) / "1.png").exists()

    assert await expire_unused(store, config, NOW) == Expired()  # a second sweep: nothing


async def test_off_by_default_and_read_from_the_environment(
    store: JobStore, tmp_path: Path
) -> None:
    config = worker_config(tmp_path / "worker")
    assert config.retention_days == 0
    stale = await tune(store, config, "stale", trained_days_ago=400)
    assert await expire_unused(store, config, NOW) == Expired()
    assert await store.tune_ids() == {stale}

    assert WorkerConfig.from_env({"WORKER_RETENTION_DAYS": "7"}).retention_days == 7
    assert WorkerConfig.from_env({}).retention_days == 0
    with pytest.raises(ConfigError, match="WORKER_RETENTION_DAYS"):
        WorkerConfig.from_env({"WORKER_RETENTION_DAYS": "a week"})


async def test_the_worker_sweeps_when_it_starts(tmp_path: Path) -> None:
    config = worker_config(tmp_path / "worker", retention_days=30)
    store = WorkerStore(config.db_path)
    await store.open()
    stale = await tune(store, config, "stale", trained_days_ago=40)
    await store.close()
    async with started(config) as worker:

        async def stale_gone() -> bool:
            return stale not in await worker.store.tune_ids()

        await until(stale_gone, "the start-up retention sweep")
    assert not (config.tunes_dir / str(stale)).exists()
