"""OVERGENERATE and FACE_DETECTOR from the environment, and the best-of scores column that
older worker databases gain on start-up."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from backends.local.config import WorkerConfig
from backends.local.store import SCHEMA, WorkerStore


def test_defaults_are_off_and_auto(tmp_path: Path) -> None:
    config = WorkerConfig.from_env({"DATA_DIR": str(tmp_path)})
    assert (config.overgenerate, config.face_detector) == (1.0, "auto")


def test_values_from_the_environment(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path), "OVERGENERATE": "2.5", "FACE_DETECTOR": " Haar "}
    config = WorkerConfig.from_env(env)
    assert (config.overgenerate, config.face_detector) == (2.5, "haar")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("OVERGENERATE", "twice", "is not a number"),
        ("OVERGENERATE", "0.5", "between 1 (off) and 4"),
        ("OVERGENERATE", "9", "between 1 (off) and 4"),
        ("FACE_DETECTOR", "yunet", "auto, dlib or haar"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        WorkerConfig.from_env({name: value})
    assert name in str(caught.value)


async def test_a_database_from_before_best_of_gains_the_scores_column(tmp_path: Path) -> None:
    path = tmp_path / "worker.sqlite3"
    old_schema = SCHEMA.replace("finished_at TEXT,\n    scores TEXT\n", "finished_at TEXT\n")
    assert old_schema != SCHEMA
    with sqlite3.connect(path) as db:
        db.executescript(old_schema)
        db.execute(
            "INSERT INTO prompts (tune_id, params, state, created_at, updated_at)"
            " VALUES (1, '{}', 'done', 'x', 'x')"
        )
    store = WorkerStore(path)
    await store.open()
    try:
        [row] = await store.list_prompts(1, limit=5, offset=0, before_id=None)
        assert row["scores"] is None
        await store.update_prompt(row["id"], scores={"generated": 2, "scores": []})
        assert (await store.get_prompt(row["id"]))["scores"] == {"generated": 2, "scores": []}
    finally:
        await store.close()
    reopened = WorkerStore(path)  # opening again adds nothing twice
    await reopened.open()
    await reopened.close()
