"""The worker's persistent state: tunes, prompts and their job state, in one SQLite file.

`JobStore` is the contract: every query, written once in portable SQL over three primitives
(`_execute`, `_insert`, `_all`). `WorkerStore` runs it on SQLite (single-machine mode, the
default); `backends.local.pg_store.PgWorkerStore` on PostgreSQL (the fleet). One contract test
suite (tests/test_worker_store_contract.py) runs against both.

The tables are the queue: a tune or prompt whose `state` is `queued` is a pending job. An accepted
request is committed before the HTTP answer goes out, so a crash or restart loses nothing; on
start-up `running` rows go back to `queued` and run again from the beginning (generation is
deterministic given the stored seed, so a re-run yields the same images).
"""

from __future__ import annotations

import contextlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import aiosqlite

from backends.local.records import FIRST_TUNE_ID, JobKind, JobState, Row

TUNES, PROMPTS = JobKind.TUNE.table, JobKind.PROMPT.table

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS tunes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    name TEXT NOT NULL,
    token TEXT NOT NULL,
    base_tune_id INTEGER NOT NULL,
    model_type TEXT NOT NULL,
    steps INTEGER,
    face_crop INTEGER,
    branch TEXT,
    callback TEXT,
    state TEXT NOT NULL,
    images TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    origin TEXT,
    callback_sent INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_training_at TEXT,
    trained_at TEXT
);
CREATE INDEX IF NOT EXISTS tunes_state ON tunes(state);
CREATE TABLE IF NOT EXISTS prompts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tune_id INTEGER NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    images TEXT NOT NULL DEFAULT '[]',
    user_error TEXT,
    origin TEXT,
    callback_sent INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    scores TEXT
);
CREATE INDEX IF NOT EXISTS prompts_state ON prompts(state);
CREATE INDEX IF NOT EXISTS prompts_tune ON prompts(tune_id);
INSERT INTO sqlite_sequence(name, seq)
    SELECT 'tunes', {FIRST_TUNE_ID - 1}
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'tunes');
INSERT INTO sqlite_sequence(name, seq)
    SELECT 'prompts', {FIRST_TUNE_ID - 1}
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'prompts');
"""

JSON_COLUMNS = ("images", "params", "scores")
"""Columns stored as JSON text (`scores`: best-of scores of a prompt's images, or NULL)."""


_created: ContextVar[list[tuple[JobKind, int]] | None] = ContextVar("created", default=None)


@contextlib.contextmanager
def recording_creations() -> Iterator[list[tuple[JobKind, int]]]:
    """Collects the rows created in this context (one HTTP request), so that a request that
    fails after committing can take them back."""
    created: list[tuple[JobKind, int]] = []
    token = _created.set(created)
    try:
        yield created
    finally:
        _created.reset(token)


def _record(kind: JobKind, row_id: int) -> None:
    created = _created.get()
    if created is not None:
        created.append((kind, row_id))


def now_iso() -> str:
    """Now in Astria's timestamp style (`astria_time`)."""
    return astria_time(datetime.now(UTC))


def astria_time(moment: datetime) -> str:
    """Astria's timestamp style: UTC, milliseconds, `Z` (so the store's times compare as text)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JobStore(ABC):
    """The worker store's contract: tunes, prompts and the queue order, on any SQL database.

    Queries use `?` placeholders; each statement commits on its own. A subclass supplies the
    connection (`open`, `close`) and the three primitives below.
    """

    dialect: ClassVar[str]
    """`sqlite` or `postgresql`: for the few expressions the two spell differently."""

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """Statements that belong together. Here (SQLite, one process) each commits on its
        own; the fleet's store makes them one transaction, with the jobs they defer."""
        yield None

    async def run_queued(self, run_id: int, tune_id: int) -> None:
        """A run's prompts were stored (inside `transaction()`). One machine's runner finds
        them in the tables; the fleet defers the run's job here."""
        return None

    @abstractmethod
    async def open(self) -> None:
        """Connect and create the tables that are missing."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def _execute(self, sql: str, args: tuple[Any, ...]) -> int:
        """Run one statement and commit it; the number of rows it changed."""

    @abstractmethod
    async def _insert(self, sql: str, args: tuple[Any, ...]) -> int:
        """Run one INSERT and commit it; the new row's id."""

    @abstractmethod
    async def _all(self, sql: str, args: tuple[Any, ...]) -> list[Row]:
        """The rows of one query, as dicts (JSON columns still encoded)."""

    async def requeue_interrupted(self) -> int:
        """Put jobs that were running when the worker stopped back in the queue."""
        n = 0
        for kind in JobKind:
            n += await self._execute(
                f"UPDATE {kind.table} SET state = ? WHERE state = ?",
                (JobState.QUEUED, JobState.RUNNING),
            )
        return n

    # -- tunes -------------------------------------------------------------------------

    async def create_tune(self, fields: Row, images: list[str], origin: str | None) -> Row:
        now = now_iso()
        tune_id = await self._insert(
            "INSERT INTO tunes (title, name, token, base_tune_id, model_type, steps, face_crop,"
            " branch, callback, state, images, origin, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                fields["title"],
                fields["name"],
                fields["token"],
                fields["base_tune_id"],
                fields["model_type"],
                fields.get("steps"),
                fields.get("face_crop"),
                fields.get("branch"),
                fields.get("callback"),
                fields.get("state", JobState.QUEUED),
                json.dumps(images),
                origin,
                now,
                now,
            ),
        )
        _record(JobKind.TUNE, tune_id)
        row = await self.get_tune(tune_id)
        assert row is not None
        return row

    async def set_tune_images(self, tune_id: int, images: list[str]) -> None:
        await self._execute(
            "UPDATE tunes SET images = ?, updated_at = ? WHERE id = ?",
            (json.dumps(images), now_iso(), tune_id),
        )

    async def get_tune(self, tune_id: int) -> Row | None:
        return await self._one("SELECT * FROM tunes WHERE id = ?", (tune_id,))

    async def find_tune_by_title(self, title: str) -> Row | None:
        return await self._one("SELECT * FROM tunes WHERE title = ? ORDER BY id LIMIT 1", (title,))

    async def list_tunes(self, *, limit: int, offset: int, before_id: int | None) -> list[Row]:
        return await self._page(TUNES, "1 = 1", (), limit, offset, before_id)

    async def update_tune(self, tune_id: int, **values: Any) -> None:
        await self._update(TUNES, tune_id, values)

    async def delete_tune(self, tune_id: int) -> bool:
        return await self._execute("DELETE FROM tunes WHERE id = ?", (tune_id,)) > 0

    # -- prompts -----------------------------------------------------------------------

    async def create_prompt(self, tune_id: int, params: Row, origin: str | None) -> Row:
        now = now_iso()
        prompt_id = await self._insert(
            "INSERT INTO prompts (tune_id, params, state, origin, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (tune_id, json.dumps(params), JobState.QUEUED, origin, now, now),
        )
        _record(JobKind.PROMPT, prompt_id)
        row = await self.get_prompt(prompt_id)
        assert row is not None
        return row

    async def get_prompt(self, prompt_id: int) -> Row | None:
        return await self._one("SELECT * FROM prompts WHERE id = ?", (prompt_id,))

    async def get_row(self, kind: JobKind, row_id: int) -> Row | None:
        """The tune's or the prompt's row, for code that handles either kind of job."""
        return await (self.get_tune(row_id) if kind == JobKind.TUNE else self.get_prompt(row_id))

    async def update_row(self, kind: JobKind, row_id: int, **values: Any) -> None:
        """Set `values` on the tune's or the prompt's row."""
        update = self.update_tune if kind == JobKind.TUNE else self.update_prompt
        await update(row_id, **values)

    async def list_prompts(
        self, tune_id: int, *, limit: int, offset: int, before_id: int | None
    ) -> list[Row]:
        return await self._page(PROMPTS, "tune_id = ?", (tune_id,), limit, offset, before_id)

    async def update_prompt(self, prompt_id: int, **values: Any) -> None:
        await self._update(PROMPTS, prompt_id, values)

    async def delete_prompt(self, prompt_id: int) -> bool:
        return await self._execute("DELETE FROM prompts WHERE id = ?", (prompt_id,)) > 0

    async def prompts_using_tune(self, tune_id: int) -> list[Row]:
        """Prompts that name `tune_id` (URL or LoRA tag) and have not run yet."""
        rows = await self._rows("SELECT * FROM prompts WHERE state = ?", (JobState.QUEUED,))
        return [
            r for r in rows if r["tune_id"] == tune_id or r["params"].get("lora_tune_id") == tune_id
        ]

    async def referenced_files(self) -> set[str]:
        """Every file path (relative to the files folder) a tune or prompt row names."""
        paths: set[str] = set()
        for kind in JobKind:
            for row in await self._rows(f"SELECT images FROM {kind.table}", ()):
                paths.update(row["images"])
        return paths

    async def tune_ids(self) -> set[int]:
        return {r["id"] for r in await self._all("SELECT id FROM tunes", ())}

    # -- retention (sweep.py) ----------------------------------------------------------

    async def finished_before(self, kind: JobKind, before: str) -> list[Row]:
        """Done or failed tunes (or prompts) that ended before `before` (an ISO time)."""
        ended = "trained_at" if kind == JobKind.TUNE else "finished_at"
        return await self._rows(
            f"SELECT * FROM {kind.table} WHERE state IN (?, ?)"
            f" AND COALESCE({ended}, updated_at) < ? ORDER BY id",
            (JobState.DONE, JobState.FAILED, before),
        )

    async def tunes_prompted_since(self, since: str) -> set[int]:
        """Tunes a prompt made since `since` used (by URL or by its LoRA tag)."""
        rows = await self._rows(
            "SELECT tune_id, params FROM prompts WHERE created_at >= ?", (since,)
        )
        return {r["tune_id"] for r in rows} | {
            r["params"]["lora_tune_id"] for r in rows if r["params"].get("lora_tune_id")
        }

    # -- queue -------------------------------------------------------------------------

    async def next_job(self) -> tuple[JobKind, int] | None:
        """The next job to run: prompts first (oldest first), then trainings.

        Prompts are short and a user is waiting for them, so a queued prompt always goes before a
        queued training; a running training hands the GPU over between steps (see queue.py).
        """
        prompt = await self.next_prompt()
        if prompt is not None:
            return (JobKind.PROMPT, prompt)
        tune = await self.next_tune()
        return (JobKind.TUNE, tune) if tune is not None else None

    async def next_prompt(self) -> int | None:
        """The oldest queued prompt that can run: not one waiting for its tune's training
        (the runner's own order, runs and interleaving, is `schedule.py`)."""
        row = await self._one(
            "SELECT p.id FROM prompts p LEFT JOIN tunes t ON t.id = p.tune_id"
            " WHERE p.state = ? AND (t.id IS NULL OR t.state = ?) ORDER BY p.id LIMIT 1",
            (JobState.QUEUED, JobState.DONE),
        )
        return row["id"] if row else None

    async def next_tune(self) -> int | None:
        row = await self._one(  # a tune whose photos are still being written is not ready
            "SELECT id FROM tunes WHERE state = ? AND images != '[]' ORDER BY id LIMIT 1",
            (JobState.QUEUED,),
        )
        return row["id"] if row else None

    async def queue_depth(self) -> dict[str, int]:
        """How many prompts and tunes wait (queued, not running), for /healthz."""
        depth = {}
        for kind in (JobKind.PROMPT, JobKind.TUNE):
            row = await self._one(
                f"SELECT COUNT(*) AS n FROM {kind.table} WHERE state = ?", (JobState.QUEUED,)
            )
            depth[kind.table] = int(row["n"]) if row else 0
        return depth

    async def queued_prompt_ids(self) -> list[int]:
        rows = await self._rows(
            "SELECT id FROM prompts WHERE state = ? ORDER BY id", (JobState.QUEUED,)
        )
        return [r["id"] for r in rows]

    async def claim_callback(self, kind: JobKind, row_id: int) -> bool:
        """Mark the callback of a finished row as sent; True once only (POSTed once)."""
        changed = await self._execute(
            f"UPDATE {kind.table} SET callback_sent = 1 WHERE id = ? AND callback_sent = 0",
            (row_id,),
        )
        return changed > 0

    async def unsent_callbacks(self) -> list[tuple[JobKind, int]]:
        """Finished rows whose callback was not yet claimed (the worker stopped in between)."""
        finished = (JobState.DONE, JobState.FAILED)
        out: list[tuple[JobKind, int]] = []
        tunes = await self._rows(
            "SELECT id FROM tunes WHERE callback_sent = 0 AND state IN (?, ?)"
            " AND callback IS NOT NULL",
            finished,
        )
        out += [(JobKind.TUNE, r["id"]) for r in tunes]
        prompts = await self._rows(
            "SELECT id, params FROM prompts WHERE callback_sent = 0 AND state IN (?, ?)",
            finished,
        )
        out += [(JobKind.PROMPT, r["id"]) for r in prompts if r["params"].get("callback")]
        return out

    # -- helpers -----------------------------------------------------------------------

    async def _update(self, table: str, row_id: int, values: dict[str, Any]) -> None:
        values = {**values, "updated_at": now_iso()}
        for key in JSON_COLUMNS:
            if key in values and values[key] is not None and not isinstance(values[key], str):
                values[key] = json.dumps(values[key])
        cols = ", ".join(f"{k} = ?" for k in values)
        await self._execute(f"UPDATE {table} SET {cols} WHERE id = ?", (*values.values(), row_id))

    async def _page(
        self,
        table: str,
        where: str,
        args: tuple[Any, ...],
        limit: int,
        offset: int,
        before_id: int | None,
    ) -> list[Row]:
        if before_id is not None:
            where += " AND id < ?"
            args = (*args, before_id)
        return await self._rows(
            f"SELECT * FROM {table} WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )

    async def _one(self, sql: str, args: tuple[Any, ...]) -> Row | None:
        rows = await self._rows(sql, args)
        return rows[0] if rows else None

    async def _rows(self, sql: str, args: tuple[Any, ...]) -> list[Row]:
        return [_decode(row) for row in await self._all(sql, args)]


class WorkerStore(JobStore):
    """The store on one SQLite file. One connection; aiosqlite serialises the calls."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path)
        self._db.row_factory = aiosqlite.Row
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.executescript(SCHEMA)
        await _add_scores_column(self._db)
        await self._db.commit()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def _execute(self, sql: str, args: tuple[Any, ...]) -> int:
        cursor = await self.db.execute(sql, args)
        await self.db.commit()
        return cursor.rowcount

    async def _insert(self, sql: str, args: tuple[Any, ...]) -> int:
        cursor = await self.db.execute(sql, args)
        await self.db.commit()
        return int(cursor.lastrowid or 0)

    async def _all(self, sql: str, args: tuple[Any, ...]) -> list[Row]:
        async with self.db.execute(sql, args) as cursor:
            rows = await cursor.fetchall()
        return [dict(r) for r in rows]


async def _add_scores_column(db: aiosqlite.Connection) -> None:
    """Best-of scores (issue 15) came after the first databases: add the column to those."""
    async with db.execute("PRAGMA table_info(prompts)") as cursor:
        columns = {row[1] for row in await cursor.fetchall()}
    if "scores" not in columns:
        await db.execute("ALTER TABLE prompts ADD COLUMN scores TEXT")


def _decode(row: Row) -> Row:
    for key in JSON_COLUMNS:
        raw = row.get(key)
        if isinstance(raw, str):
            value = json.loads(raw)
            row[key] = _repaired(value) if "\\u" in raw else value  # only escapes can hold one
    return row


LONE_SURROGATE = re.compile("[\ud800-\udfff]")
"""What a row written before requests were checked may hold (JSON escapes it as `\\ud800`):
no answer can carry it (it is not UTF-8), so one such row broke every listing it was in."""


def _repaired(value: Any) -> Any:
    """An old row's text with each lone surrogate as U+FFFD: readable, listable, deletable."""
    if isinstance(value, str):
        return LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_repaired(item) for item in value]
    if isinstance(value, dict):
        return {key: _repaired(item) for key, item in value.items()}
    return value
