"""The single source of truth: an aiosqlite database in WAL mode (schema in `schema.py`).

Everything a restart must not lose lives here: users, their pending photo sets, tunes,
generations, and where each result has to be delivered. Media bytes live as files under
`DATA_DIR`; the database keeps their paths relative to it, so the folder can move. The rows
come back as the records of `records.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiosqlite

from bot.core import schema
from bot.core.records import (
    GENERATION_UNFINISHED,
    TUNE_GAVE_UP,
    TUNE_UNFINISHED,
    Action,
    ActionKind,
    ChatTarget,
    Delivery,
    GenerationRecord,
    GenerationState,
    JobKind,
    Photo,
    TuneRecord,
    TuneState,
    User,
    sql_in,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


Also = Callable[[aiosqlite.Connection, int], Awaitable[None]]
"""More writes of one use case, run inside its transaction with the id of the row it made
(or deletes): a job's credit hold commits with the job's own row, or neither commits
(bot/core/credits.py). Raising refuses the whole write."""


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass
class Columns:
    """Maps a row to a dataclass, converting the columns that are not plain values."""

    datetimes: tuple[str, ...] = ()
    json_columns: tuple[str, ...] = ()
    bools: tuple[str, ...] = ()
    enums: dict[str, type[StrEnum]] = field(default_factory=dict)
    skip: tuple[str, ...] = ()

    def convert(self, row: aiosqlite.Row, cls: type) -> Any:
        values = {key: row[key] for key in row.keys() if key not in self.skip}  # noqa: SIM118
        for key in self.datetimes:
            values[key] = _dt(values[key])
        for key in self.json_columns:
            values[key] = json.loads(values[key])
        for key in self.bools:
            values[key] = bool(values[key])
        for key, enum in self.enums.items():
            values[key] = enum(values[key])
        return cls(**values)


_USER = Columns(datetimes=("consented_at", "last_seen_at"), skip=("created_at", "retention_notice"))
_PHOTO = Columns(json_columns=("attributes",), skip=("created_at", "tune_id"))
_TUNE = Columns(
    datetimes=("eta", "created_at", "trained_at"),
    enums={"state": TuneState},
    skip=("updated_at",),
)
_GENERATION = Columns(
    datetimes=("created_at",),
    json_columns=("options", "result_files"),
    enums={"state": GenerationState},
    skip=("updated_at", "finished_at"),
)
_QUEUED_GENERATION = dataclasses.replace(_GENERATION, skip=(*_GENERATION.skip, "queue_position"))
_ACTION = Columns(skip=("created_at",))
_DELIVERY = Columns(datetimes=("delivered_at",), bools=("is_private",), enums={"job_kind": JobKind})


class Store:
    """All queries of the bot. One connection; aiosqlite runs it on its own thread.

    Every write goes through `_transaction` (several statements) or `_one_statement`: the
    statements of one use case commit (or roll back) together, and other coroutines' writes
    wait their turn on one lock, so no commit ever carries someone else's half-done work
    (concurrent handlers share this one connection).
    """

    def __init__(self, connection: aiosqlite.Connection, data_dir: Path) -> None:
        self._db = connection
        self.data_dir = data_dir
        self._write_lock = asyncio.Lock()
        # Every update looks its sender up; users change only through this store (one bot
        # process), so they are kept here and dropped on each write to them.
        self._users: dict[tuple[str, str], User] = {}
        self._user_keys: dict[int, tuple[str, str]] = {}
        # Likewise each user's tunes (imagine, plain text, /status, /models read them), dropped
        # once a write to them has committed. A read sent before that commit is answered, and
        # kept, before the drop: the one connection answers in order.
        self._tunes: dict[int, list[TuneRecord]] = {}

    # -- media files under data_dir (photos/, images/, shoots/) ----------------------------

    def generation_folder(self, generation_id: int) -> Path:
        """Where an image set's downloaded images go."""
        return self.data_dir / "images" / str(generation_id)

    def shoot_folder(self, shoot_id: int) -> Path:
        """Where a shoot's downloaded images and its ZIP parts go."""
        return self.data_dir / "shoots" / str(shoot_id)

    def remove_media(
        self,
        photo_paths: Iterable[str] = (),
        generation_ids: Iterable[int] = (),
        shoot_ids: Iterable[int] = (),
    ) -> None:
        """Delete media files (/cancel's pending photos, /delete, retention); what is gone
        already is fine. Blocking file I/O: callers run it in a thread."""
        for relative in photo_paths:
            (self.data_dir / relative).unlink(missing_ok=True)
        for folder in [
            *map(self.generation_folder, generation_ids),
            *map(self.shoot_folder, shoot_ids),
        ]:
            shutil.rmtree(folder, ignore_errors=True)

    @classmethod
    async def open(cls, database_path: Path, data_dir: Path) -> Store:
        """Open (or create) the database and bring its schema up to date; media files go
        under `data_dir` (Settings.database_path and Settings.data_dir)."""
        schema.check_sqlite_version()
        data_dir.mkdir(parents=True, exist_ok=True)
        database_path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: a one-statement write commits itself, in one trip to the database
        # thread (`_one_statement`); a transaction of several begins explicitly (`_transaction`).
        connection = await aiosqlite.connect(database_path, isolation_level=None)
        connection.row_factory = aiosqlite.Row
        await connection.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives a crash of the bot (what restarts need) without an
        # fsync per commit; only a power cut may lose the last moments.
        await connection.execute("PRAGMA synchronous=NORMAL")
        await connection.execute("PRAGMA foreign_keys=ON")
        await connection.execute("PRAGMA busy_timeout=5000")
        await schema.migrate(connection)
        return cls(connection, data_dir)

    async def close(self) -> None:
        await self._db.close()

    async def schema_version(self) -> int:
        return await schema.schema_version(self._db)

    # -- users -------------------------------------------------------------------------------

    async def get_or_create_user(
        self,
        platform: str,
        platform_user_id: str,
        display_name: str | None = None,
        platform_language: str | None = None,
    ) -> User:
        """Every update asks this: from memory mostly, a write only for a new user, or a new
        name or platform language (None for either: unknown, keep what is stored)."""
        user = await self.find_user(platform, platform_user_id)
        if (
            user is not None
            and display_name in (None, user.display_name)
            and platform_language in (None, user.platform_language)
        ):
            return user
        now = iso(utcnow())  # a new user was seen now: no second write for that (retention.py)
        try:
            async with self._one_statement() as db:
                row = await returned_row(
                    db,
                    "INSERT INTO users (platform, platform_user_id, display_name,"
                    " platform_language, created_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (platform, platform_user_id) DO UPDATE SET"
                    " display_name = COALESCE(excluded.display_name, display_name),"
                    " platform_language = COALESCE(excluded.platform_language, platform_language)"
                    " RETURNING *",
                    (platform, platform_user_id, display_name, platform_language, now, now),
                )
        finally:
            self._forget_user((platform, platform_user_id))
        written: User = _USER.convert(row, User)
        return written

    async def find_user(self, platform: str, platform_user_id: str) -> User | None:
        """The user of a chat account, or None: nothing is created (admin look-ups, the
        language of an update). From memory mostly."""
        key = (platform, platform_user_id)
        user = self._users.get(key)
        if user is None:
            user = await self._find_user(platform, platform_user_id)
        if user is not None:
            self._users[key] = user
            self._user_keys[user.id] = key
        return user

    async def _find_user(self, platform: str, platform_user_id: str) -> User | None:
        return await self._one(
            "SELECT * FROM users WHERE platform = ? AND platform_user_id = ?",
            (platform, platform_user_id),
            _USER,
            User,
        )

    async def get_user(self, user_id: int) -> User | None:
        """From memory when the user's update was seen lately (see `find_user`)."""
        key = self._user_keys.get(user_id)
        cached = self._users.get(key) if key else None
        if cached is not None:
            return cached
        return await self._one("SELECT * FROM users WHERE id = ?", (user_id,), _USER, User)

    async def set_active_tune(self, user_id: int, tune_id: int | None) -> None:
        try:
            await self._write(
                "UPDATE users SET active_tune_id = ? WHERE id = ?", (tune_id, user_id)
            )
        finally:
            self._forget_user(self._user_keys.get(user_id))

    async def set_language(self, user_id: int, language: str | None) -> None:
        """The user's own language choice (None: follow the platform's again)."""
        try:
            await self._write("UPDATE users SET language = ? WHERE id = ?", (language, user_id))
        finally:
            self._forget_user(self._user_keys.get(user_id))

    async def record_consent(self, user_id: int) -> None:
        """Issue 15: the user confirmed the consent question now (kept until /delete)."""
        try:
            await self._write(
                "UPDATE users SET consented_at = COALESCE(consented_at, ?) WHERE id = ?",
                (iso(utcnow()), user_id),
            )
        finally:
            self._forget_user(self._user_keys.get(user_id))

    def forget_cached_user(self, user_id: int) -> None:
        """For writes to `users` made through `transaction` (retention.py): drop the copy."""
        self._forget_user(self._user_keys.get(user_id))

    def _forget_user(self, key: tuple[str, str] | None) -> None:
        """Drop the cached copy of a user whose row was written. Called once the write has
        committed or failed: a copy read meanwhile may be stale."""
        cached = self._users.pop(key, None) if key else None
        if cached is not None:
            del self._user_keys[cached.id]

    async def delete_user_data(self, user_id: int, *, also: Also | None = None) -> None:
        """Remove every row of the user (the cascade takes photos, tunes, generations)."""
        try:
            async with self._transaction() as db:
                if also is not None:
                    await also(db, user_id)
                await db.execute(
                    f"DELETE FROM deliveries WHERE (job_kind = '{JobKind.TUNE.value}' AND job_id IN"
                    " (SELECT id FROM tunes WHERE user_id = ?)) OR"
                    f" (job_kind = '{JobKind.GENERATION.value}' AND"
                    " job_id IN (SELECT id FROM generations WHERE user_id = ?)) OR"
                    f" (job_kind = '{JobKind.SHOOT.value}' AND"
                    " job_id IN (SELECT id FROM shoots WHERE user_id = ?))",
                    (user_id, user_id, user_id),
                )
                await db.execute("DELETE FROM users WHERE id = ?", (user_id,))
        finally:
            self._forget_user(self._user_keys.get(user_id))
            self._forget_tunes(user_id)

    # -- photos ------------------------------------------------------------------------------

    async def add_photo(
        self,
        user_id: int,
        *,
        sha256: str,
        width: int,
        height: int,
        size_bytes: int,
        path: str,
        phash: str | None = None,
        attributes: dict[str, str] | None = None,
    ) -> Photo:
        attributes = attributes or {}
        photo_id = await self._write(
            "INSERT INTO photos (user_id, sha256, width, height, size_bytes, path, created_at,"
            " phash, attributes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                user_id,
                sha256,
                width,
                height,
                size_bytes,
                path,
                iso(utcnow()),
                phash,
                json.dumps(attributes),
            ),
        )
        return Photo(photo_id, user_id, sha256, width, height, size_bytes, path, phash, attributes)

    async def pending_photos(self, user_id: int) -> list[Photo]:
        """Photos collected since the last training: the set `/train` will use."""
        return await self._all(
            "SELECT * FROM photos WHERE user_id = ? AND tune_id IS NULL ORDER BY id",
            (user_id,),
            _PHOTO,
            Photo,
        )

    async def delete_pending_photos(self, user_id: int) -> list[Photo]:
        photos = await self.pending_photos(user_id)
        await self._write("DELETE FROM photos WHERE user_id = ? AND tune_id IS NULL", (user_id,))
        return photos

    async def user_photos(self, user_id: int) -> list[Photo]:
        return await self._all(
            "SELECT * FROM photos WHERE user_id = ? ORDER BY id", (user_id,), _PHOTO, Photo
        )

    # -- tunes -------------------------------------------------------------------------------

    async def create_tune(
        self,
        user_id: int,
        *,
        title: str,
        class_name: str,
        token: str,
        label: str | None,
        photo_ids: Iterable[int],
        target: ChatTarget | None = None,
        also: Also | None = None,
    ) -> TuneRecord:
        """Record a training before it is sent, and bind the pending photos to it atomically;
        with `target`, its delivery too (so a crash cannot leave a tune nobody resumes)."""
        now = iso(utcnow())
        async with self._writing_tunes(user_id), self._transaction() as db:
            tune: TuneRecord = _TUNE.convert(
                await returned_row(
                    db,
                    "INSERT INTO tunes (user_id, title, class_name, label, token, state,"
                    " callback_secret, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                    (
                        user_id,
                        title,
                        class_name,
                        label,
                        token,
                        TuneState.CREATING,
                        secrets.token_urlsafe(16),
                        now,
                        now,
                    ),
                ),
                TuneRecord,
            )
            await db.executemany(
                "UPDATE photos SET tune_id = ? WHERE id = ? AND user_id = ?",
                [(tune.id, photo_id, user_id) for photo_id in photo_ids],
            )
            if target is not None:
                await self._insert_delivery(db, JobKind.TUNE, tune.id, target)
            if also is not None:
                await also(db, tune.id)
        return tune

    async def get_tune(self, tune_id: int) -> TuneRecord | None:
        return await self._one("SELECT * FROM tunes WHERE id = ?", (tune_id,), _TUNE, TuneRecord)

    async def user_tunes(self, user_id: int) -> list[TuneRecord]:
        """The user's tunes, oldest first; from memory after the first read (see __init__)."""
        cached = self._tunes.get(user_id)
        if cached is None:
            cached = await self._all(
                "SELECT * FROM tunes WHERE user_id = ? ORDER BY id", (user_id,), _TUNE, TuneRecord
            )
            self._tunes[user_id] = cached
        return list(cached)

    @contextlib.asynccontextmanager
    async def _writing_tunes(self, user_id: int | None) -> AsyncIterator[None]:
        """Around a write to tunes: the cached list is dropped once it has committed or failed
        (None: every user's, when the owner is not known)."""
        try:
            yield
        finally:
            self._forget_tunes(user_id)

    def _forget_tunes(self, user_id: int | None) -> None:
        if user_id is None:
            self._tunes.clear()
        else:
            self._tunes.pop(user_id, None)

    async def tune_photos(self, tune_id: int) -> list[Photo]:
        return await self._all(
            "SELECT * FROM photos WHERE tune_id = ? ORDER BY id", (tune_id,), _PHOTO, Photo
        )

    async def unfinished_tunes(self) -> list[TuneRecord]:
        return await self._all(
            f"SELECT * FROM tunes WHERE state {sql_in(TUNE_UNFINISHED)} ORDER BY id",
            (),
            _TUNE,
            TuneRecord,
        )

    async def update_tune(self, tune_id: int, **changes: Any) -> TuneRecord:
        """A tune that ends failed or cancelled gives its photos back to the pending set (the
        user is told "send /train again"), but for copies already pending again."""
        try:
            async with self._transaction() as db:
                tune: TuneRecord = _TUNE.convert(
                    await self._update(db, "tunes", tune_id, changes), TuneRecord
                )
                if changes.get("state") in TUNE_GAVE_UP:
                    await db.execute(
                        "UPDATE photos SET tune_id = NULL WHERE tune_id = ? AND sha256 NOT IN"
                        " (SELECT p.sha256 FROM photos p"
                        "  WHERE p.user_id = photos.user_id AND p.tune_id IS NULL)",
                        (tune_id,),
                    )
        except BaseException:
            self._forget_tunes(None)  # whose it was is not known: everyone's
            raise
        self._forget_tunes(tune.user_id)
        return tune

    # -- generations -------------------------------------------------------------------------

    async def create_generation(
        self,
        user_id: int,
        *,
        tune_id: int,
        prompt_typed: str,
        prompt_sent: str,
        negative_prompt: str,
        options: dict[str, Any],
        seed: int,
        target: ChatTarget,
        also: Also | None = None,
    ) -> tuple[GenerationRecord, Delivery]:
        """Record a generation and its delivery together, before anything is sent."""
        now = iso(utcnow())
        async with self._transaction() as db:
            row = await returned_row(
                db,
                "INSERT INTO generations (user_id, tune_id, prompt_typed, prompt_sent,"
                " negative_prompt, options, seed, state, callback_secret, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (
                    user_id,
                    tune_id,
                    prompt_typed,
                    prompt_sent,
                    negative_prompt,
                    json.dumps(options),
                    seed,
                    GenerationState.QUEUED,
                    secrets.token_urlsafe(16),
                    now,
                    now,
                ),
            )
            generation: GenerationRecord = _GENERATION.convert(row, GenerationRecord)
            delivery = await self._insert_delivery(db, JobKind.GENERATION, generation.id, target)
            if also is not None:
                await also(db, generation.id)
        return generation, delivery

    async def generation_by_backend_id(self, backend_id: int) -> GenerationRecord | None:
        return await self._one(
            "SELECT * FROM generations WHERE backend_id = ?", (backend_id,), _GENERATION,
            GenerationRecord,
        )  # fmt: skip

    async def get_generation(self, generation_id: int) -> GenerationRecord | None:
        return await self._one(
            "SELECT * FROM generations WHERE id = ?", (generation_id,), _GENERATION,
            GenerationRecord,
        )  # fmt: skip

    async def user_generations(self, user_id: int) -> list[GenerationRecord]:
        return await self._all(
            "SELECT * FROM generations WHERE user_id = ? ORDER BY id",
            (user_id,),
            _GENERATION,
            GenerationRecord,
        )

    async def unfinished_generations(self) -> list[GenerationRecord]:
        return await self._all(
            f"SELECT * FROM generations WHERE state {sql_in(GENERATION_UNFINISHED)} ORDER BY id",
            (),
            _GENERATION,
            GenerationRecord,
        )

    async def update_generation(self, generation_id: int, **changes: Any) -> GenerationRecord:
        if "result_files" in changes:
            changes["result_files"] = json.dumps(changes["result_files"])
        if "state" in changes and not GenerationState(changes["state"]).unfinished:
            changes.setdefault("finished_at", utcnow())
        async with self._one_statement() as db:
            row = await self._update(db, "generations", generation_id, changes)
        generation: GenerationRecord = _GENERATION.convert(row, GenerationRecord)
        return generation

    async def queued_generations(self, user_id: int) -> list[tuple[GenerationRecord, int]]:
        """The user's unfinished generations, oldest first, each with its `queue_position`:
        what /status shows, in one trip (issue 20: it was one trip per queued generation,
        after reading every generation the user ever made)."""
        unfinished = sql_in(GENERATION_UNFINISHED)
        rows = await self._rows(
            "SELECT g.*, (SELECT COUNT(*) FROM generations o"
            f" WHERE o.state {unfinished} AND o.id < g.id) AS queue_position"
            f" FROM generations g WHERE g.user_id = ? AND g.state {unfinished} ORDER BY g.id",
            (user_id,),
        )
        return [
            (_QUEUED_GENERATION.convert(row, GenerationRecord), int(row["queue_position"]))
            for row in rows
        ]

    async def queue_position(self, generation_id: int) -> int:
        """How many unfinished generations (of anyone) were asked for before this one."""
        rows = await self._rows(
            f"SELECT COUNT(*) FROM generations WHERE state {sql_in(GENERATION_UNFINISHED)}"
            " AND id < ?",
            (generation_id,),
        )
        return int(rows[0][0]) if rows else 0

    # -- deliveries --------------------------------------------------------------------------

    async def add_delivery(self, job_kind: JobKind, job_id: int, target: ChatTarget) -> Delivery:
        async with self._one_statement() as db:
            return await self._insert_delivery(db, job_kind, job_id, target)

    @staticmethod
    async def _insert_delivery(
        db: aiosqlite.Connection, job_kind: JobKind, job_id: int, target: ChatTarget
    ) -> Delivery:
        row = await returned_row(
            db,
            "INSERT INTO deliveries (job_kind, job_id, platform, chat_id, is_private,"
            " reply_to_message_id) VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
            (
                job_kind,
                job_id,
                target.platform,
                target.chat_id,
                int(target.is_private),
                target.reply_to_message_id,
            ),
        )
        delivery: Delivery = _DELIVERY.convert(row, Delivery)
        return delivery

    async def get_delivery(self, job_kind: JobKind, job_id: int) -> Delivery | None:
        return await self._one(
            "SELECT * FROM deliveries WHERE job_kind = ? AND job_id = ?",
            (job_kind, job_id),
            _DELIVERY,
            Delivery,
        )

    async def undelivered(self) -> list[Delivery]:
        """Deliveries still owed: the jobs a restart has to resume, oldest first."""
        return await self._all(
            "SELECT * FROM deliveries WHERE delivered_at IS NULL ORDER BY id",
            (),
            _DELIVERY,
            Delivery,
        )

    async def set_status_message(self, delivery_id: int, message_id: str | None, text: str) -> None:
        await self._write(
            "UPDATE deliveries SET status_message_id = ?, status_text = ? WHERE id = ?",
            (message_id, text, delivery_id),
        )

    async def mark_delivered(self, delivery_id: int) -> bool:
        """Claim the delivery; False when it was already delivered (so nothing goes out twice)."""
        async with self._one_statement() as db:
            cursor = await db.execute(
                "UPDATE deliveries SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL",
                (iso(utcnow()), delivery_id),
            )
        return cursor.rowcount == 1

    # -- buttons -----------------------------------------------------------------------------

    async def create_action(
        self,
        user_id: int,
        kind: ActionKind,
        *,
        generation_id: int | None = None,
        argument: str | None = None,
    ) -> Action:
        """Store a button's meaning under a short random token (the button carries the token)."""
        token = secrets.token_urlsafe(9)
        action_id = await self._write(
            "INSERT INTO actions (token, user_id, generation_id, kind, argument, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (token, user_id, generation_id, kind, argument, iso(utcnow())),
        )
        return Action(action_id, token, user_id, generation_id, kind, argument)

    async def get_action(self, token: str) -> Action | None:
        return await self._one("SELECT * FROM actions WHERE token = ?", (token,), _ACTION, Action)

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    async def _update(
        db: aiosqlite.Connection, table: str, row_id: int, changes: dict[str, Any]
    ) -> aiosqlite.Row:
        """Inside a `_transaction` or `_one_statement`: set `changes` on one row (timestamps
        stamped) in one statement; returns the row as it is now."""
        if not changes:
            return await returned_row(db, f"SELECT * FROM {table} WHERE id = ?", (row_id,))
        changes = {
            key: iso(value) if isinstance(value, datetime) else value
            for key, value in changes.items()
        }
        if table in ("tunes", "generations"):
            changes["updated_at"] = iso(utcnow())
        assignments = ", ".join(f"{column} = ?" for column in changes)
        return await returned_row(
            db,
            f"UPDATE {table} SET {assignments} WHERE id = ? RETURNING *",
            (*changes.values(), row_id),
        )

    @contextlib.asynccontextmanager
    async def transaction(
        self, *, writes_tunes: bool = True
    ) -> AsyncIterator[aiosqlite.Connection]:
        """The one write transaction, for the modules that keep tables of their own in this
        database (the ledger, bans): their writes take the same lock as every other. What
        they write is not known here, so the cached tunes are dropped after it, unless the
        caller says it leaves `tunes` alone (the ledger, on every job: dropping every user's
        cache each time made it useless under load)."""
        async with self._maybe_writing_tunes(writes_tunes), self._transaction() as db:
            yield db

    @contextlib.asynccontextmanager
    async def one_statement(
        self, *, writes_tunes: bool = True
    ) -> AsyncIterator[aiosqlite.Connection]:
        """`transaction` for a write of ONE statement, atomic by itself: one trip to the
        database thread, and no wait for the lock unless a transaction is open (see
        `_one_statement`, whose rule holds here: the block's first await is that statement)."""
        async with self._maybe_writing_tunes(writes_tunes), self._one_statement() as db:
            yield db

    def _maybe_writing_tunes(
        self, writes_tunes: bool
    ) -> contextlib.AbstractAsyncContextManager[Any]:
        """`_writing_tunes` for every user, or nothing when the caller leaves `tunes` alone."""
        return self._writing_tunes(None) if writes_tunes else contextlib.nullcontext()

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        """A read for those modules (see `transaction`)."""
        return await self._rows(sql, params)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One atomic write: commits at the end, rolls back on any error (see the class doc).
        IMMEDIATE: its reads are of the state it writes over, even beside a second process."""
        async with self._write_lock:
            try:
                # In the try: a task cancelled while it waits for BEGIN's answer has queued
                # it all the same, and must queue the rollback after it (a no-op without one).
                await self._db.execute("BEGIN IMMEDIATE")
                yield self._db
            except BaseException:
                await self._db.rollback()
                raise
            try:
                await self._db.commit()
            except BaseException:  # a COMMIT that failed (I/O, disk full) leaves BEGIN open:
                await self._db.rollback()  # lock-free writes would join it and be lost with it
                raise

    @contextlib.asynccontextmanager
    async def _one_statement(self) -> AsyncIterator[aiosqlite.Connection]:
        """For a write of ONE statement, atomic by itself (it commits as it runs). It waits
        for the write lock only while a `_transaction` holds it, which it would join; else it
        goes at once: the database thread runs statements in the order they were queued, and
        this one is queued before its coroutine first yields (the caller's first await is the
        aiosqlite call, which queues it before awaiting the answer), so a transaction that
        starts later begins after it. Most writes are one statement; under load, each of them
        holding the lock for trips to the database thread and back (every trip waiting its
        turn on a busy event loop) made every write wait hundreds of milliseconds.
        A write with RETURNING goes through `execute_fetchall` (`returned_row`): a cursor left
        unread would keep its statement running, and a later BEGIN would take it in."""
        if not self._write_lock.locked():
            yield self._db
            return
        async with self._write_lock:
            yield self._db

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        """One statement, committed; returns the new row's id for an INSERT."""
        async with self._one_statement() as db:
            cursor = await db.execute(sql, params)
        return cursor.lastrowid or 0

    async def _rows(self, sql: str, params: Sequence[Any]) -> list[aiosqlite.Row]:
        """A read in one trip to the database thread (execute, fetch and close go together:
        every trip costs a thread hand-over, and under load a wait for the GIL)."""
        return list(await self._db.execute_fetchall(sql, params))

    async def _one(self, sql: str, params: Sequence[Any], columns: Columns, cls: type) -> Any:
        rows = await self._rows(sql, params)
        return columns.convert(rows[0], cls) if rows else None

    async def _all(self, sql: str, params: Sequence[Any], columns: Columns, cls: type) -> Any:
        return [columns.convert(row, cls) for row in await self._rows(sql, params)]


async def returned_row(db: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> aiosqlite.Row:
    """The row a write returns (`RETURNING *`) or a look-up finds, in one trip to the database
    thread; a missing row is a bug of the caller (an id that does not exist)."""
    rows = list(await db.execute_fetchall(sql, params))
    if not rows:
        raise LookupError(f"no row for: {sql.split(' WHERE')[0]}")
    return rows[0]
