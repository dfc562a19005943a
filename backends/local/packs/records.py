"""Runs and likes, in the worker's own SQLite file beside the queue (`store.py`).

- A run is the prompts one request made for one tune (a pack on a tune, or the
  `tune[prompts_attributes]` of a new tune). Each of its prompts carries the run's id in its
  params (`run_id`), written with the prompt, so a prompt is never seen outside its run. The
  run row holds what belongs to the whole: the `prompts_callback` and whether it was sent.
- A like is a row per liked prompt (a state, not a counter: liking twice is liking once), with
  the pack prompt it was made from, so likes add up per pack prompt and per pack.
"""

from __future__ import annotations

from typing import Any

from backends.local.records import JobState, Row
from backends.local.store import WorkerStore, now_iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS pack_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tune_id INTEGER NOT NULL,
    pack_id INTEGER,
    prompts_callback TEXT,
    callback_sent INTEGER NOT NULL DEFAULT 0,
    origin TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS prompts_run ON prompts(json_extract(params, '$.run_id'));
CREATE TABLE IF NOT EXISTS prompt_likes (
    prompt_id INTEGER PRIMARY KEY,
    pack_id INTEGER,
    orig_prompt_id INTEGER,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS prompt_likes_orig ON prompt_likes(orig_prompt_id);
"""
RUN_ID = "json_extract(params, '$.run_id')"
"""The expression the `prompts_run` index is built on: queries must spell it the same way."""


class PackRecords:
    """Queries on the run and like tables, through the worker store's connection."""

    def __init__(self, store: WorkerStore) -> None:
        self.store = store

    async def create_run(
        self, tune_id: int, pack_id: int | None, prompts_callback: str | None, origin: str | None
    ) -> int:
        cursor = await self.store.db.execute(
            "INSERT INTO pack_runs (tune_id, pack_id, prompts_callback, origin, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (tune_id, pack_id, prompts_callback, origin, now_iso()),
        )
        await self.store.db.commit()
        return int(cursor.lastrowid or 0)

    async def get_run(self, run_id: int) -> Row | None:
        rows = await self._rows("SELECT * FROM pack_runs WHERE id = ?", (run_id,))
        return rows[0] if rows else None

    async def run_prompt_ids(self, run_id: int) -> list[int]:
        rows = await self._rows(f"SELECT id FROM prompts WHERE {RUN_ID} = ? ORDER BY id", (run_id,))
        return [r["id"] for r in rows]

    async def run_finished(self, run_id: int) -> bool:
        """True when none of the run's prompts is queued or running any more."""
        rows = await self._rows(
            f"SELECT COUNT(*) AS n FROM prompts WHERE {RUN_ID} = ? AND state NOT IN (?, ?)",
            (run_id, JobState.DONE, JobState.FAILED),
        )
        return rows[0]["n"] == 0

    async def claim_run_callback(self, run_id: int) -> bool:
        """Mark the run's callback as sent; True once only (it is POSTed at most once)."""
        cursor = await self.store.db.execute(
            "UPDATE pack_runs SET callback_sent = 1 WHERE id = ? AND callback_sent = 0",
            (run_id,),
        )
        await self.store.db.commit()
        return cursor.rowcount > 0

    async def runs_with_unsent_callbacks(self) -> list[int]:
        rows = await self._rows(
            "SELECT id FROM pack_runs WHERE callback_sent = 0 AND prompts_callback IS NOT NULL",
            (),
        )
        return [r["id"] for r in rows]

    # -- likes ---------------------------------------------------------------------------

    async def like(self, prompt: Row) -> None:
        params = prompt["params"]
        await self.store.db.execute(
            "INSERT OR IGNORE INTO prompt_likes (prompt_id, pack_id, orig_prompt_id, created_at)"
            " VALUES (?, ?, ?, ?)",
            (prompt["id"], params.get("pack_id"), params.get("orig_prompt_id"), now_iso()),
        )
        await self.store.db.commit()

    async def unlike(self, prompt_id: int) -> None:
        await self.store.db.execute("DELETE FROM prompt_likes WHERE prompt_id = ?", (prompt_id,))
        await self.store.db.commit()

    async def likes_per_pack_prompt(self) -> dict[int, int]:
        """Pack prompt id -> likes on the prompts made from it (deleted ones still count)."""
        rows = await self._rows(
            "SELECT orig_prompt_id AS id, COUNT(*) AS n FROM prompt_likes"
            " WHERE orig_prompt_id IS NOT NULL GROUP BY orig_prompt_id",
            (),
        )
        return {r["id"]: r["n"] for r in rows}

    async def _rows(self, sql: str, args: tuple[Any, ...]) -> list[Row]:
        async with self.store.db.execute(sql, args) as cursor:
            return [dict(r) for r in await cursor.fetchall()]
