"""The rows of shoots (issue 14): a pack run on one model, and its shots.

Kept beside `Store` (on its connection and write lock, like the ledger) so that the main store
stays about users, tunes and single generations. A shoot is recorded with its delivery and its
credit hold in one transaction, before anything is sent; its shots are recorded as the backend
answers, and each one's `delivered` flag is set only after its images reached the chat, so a
restart sends the rest, once.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import aiosqlite

from bot.core.ledger import Entry
from bot.core.records import (
    SHOOT_UNFINISHED,
    ChatTarget,
    Delivery,
    JobKind,
    ShootRecord,
    ShootState,
    Shot,
    ShotState,
    sql_in,
)
from bot.core.store import Also, Columns, Store, iso, returned_row, utcnow

_SHOOT = Columns(datetimes=("created_at",), enums={"state": ShootState})
_SHOT = Columns(
    json_columns=("result_files",), bools=("delivered", "liked"), enums={"state": ShotState}
)


@dataclass(frozen=True)
class NewShoot:
    """A shoot as it is asked for: the pack, the model, what it makes, where it goes."""

    user_id: int
    tune_id: int
    pack_id: int
    pack_title: str
    num_images: int
    state: ShootState
    target: ChatTarget


class ShootStore:
    """Reads and writes `shoots` and `shots`; see the module docstring."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(self, new: NewShoot, also: Also | None = None) -> tuple[ShootRecord, Delivery]:
        """Record a shoot, its delivery and (`also`) its hold together."""
        async with self._store.transaction(writes_tunes=False) as db:
            return await self.insert(db, new, also)

    @staticmethod
    async def insert(
        db: aiosqlite.Connection, new: NewShoot, also: Also | None = None
    ) -> tuple[ShootRecord, Delivery]:
        """`create` inside a transaction of the caller's (a training's, for train-and-shoot)."""
        row = await returned_row(
            db,
            "INSERT INTO shoots (user_id, tune_id, pack_id, pack_title, num_images, state,"
            " callback_secret, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
            (
                new.user_id,
                new.tune_id,
                new.pack_id,
                new.pack_title,
                new.num_images,
                new.state,
                secrets.token_urlsafe(16),
                iso(utcnow()),
            ),
        )
        shoot: ShootRecord = _SHOOT.convert(row, ShootRecord)
        delivery = await Store._insert_delivery(db, JobKind.SHOOT, shoot.id, new.target)
        if also is not None:
            await also(db, shoot.id)
        return shoot, delivery

    async def training_with(self, tune_id: int) -> ShootRecord | None:
        """The shoot whose pack run creates this tune (train-and-shoot), if any."""
        rows = await self._store.fetch(
            "SELECT * FROM shoots WHERE tune_id = ? AND state = ?", (tune_id, ShootState.TRAINING)
        )
        return _SHOOT.convert(rows[0], ShootRecord) if rows else None

    async def get(self, shoot_id: int) -> ShootRecord | None:
        rows = await self._store.fetch("SELECT * FROM shoots WHERE id = ?", (shoot_id,))
        return _SHOOT.convert(rows[0], ShootRecord) if rows else None

    async def of_user(self, user_id: int) -> list[ShootRecord]:
        rows = await self._store.fetch(
            "SELECT * FROM shoots WHERE user_id = ? ORDER BY id", (user_id,)
        )
        return [_SHOOT.convert(row, ShootRecord) for row in rows]

    async def waiting_for(self, tune_id: int) -> list[ShootRecord]:
        """The unfinished shoots of one model (its training's end wakes them)."""
        rows = await self._store.fetch(
            f"SELECT * FROM shoots WHERE tune_id = ? AND state {sql_in(SHOOT_UNFINISHED)}",
            (tune_id,),
        )
        return [_SHOOT.convert(row, ShootRecord) for row in rows]

    async def update(self, shoot_id: int, **changes: Any) -> ShootRecord:
        async with self._store.one_statement(writes_tunes=False) as db:
            row = await Store._update(db, "shoots", shoot_id, changes)
        shoot: ShootRecord = _SHOOT.convert(row, ShootRecord)
        return shoot

    # -- shots -------------------------------------------------------------------------------

    async def add_shots(self, shoot_id: int, shots: list[tuple[int, str, int]]) -> list[Shot]:
        """Record the backend's prompts (id, text, images) of a shoot, and mark it running,
        in one transaction: a restart finds either all of them or the shoot still submitting."""
        async with self._store.transaction(writes_tunes=False) as db:
            for backend_id, text, num_images in shots:
                await db.execute(
                    "INSERT INTO shots (shoot_id, backend_id, text, num_images, state)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (backend_id) DO NOTHING",
                    (shoot_id, backend_id, text, num_images, ShotState.RUNNING),
                )
            await db.execute(
                "UPDATE shoots SET state = ? WHERE id = ?", (ShootState.RUNNING, shoot_id)
            )
        return await self.shots(shoot_id)

    async def shots(self, shoot_id: int) -> list[Shot]:
        rows = await self._store.fetch(
            "SELECT * FROM shots WHERE shoot_id = ? ORDER BY id", (shoot_id,)
        )
        return [_SHOT.convert(row, Shot) for row in rows]

    async def get_shot(self, shot_id: int) -> Shot | None:
        rows = await self._store.fetch("SELECT * FROM shots WHERE id = ?", (shot_id,))
        return _SHOT.convert(rows[0], Shot) if rows else None

    async def known_backend_ids(self, backend_ids: list[int]) -> set[int]:
        """Which of these backend prompts belong to a shoot already."""
        if not backend_ids:
            return set()
        marks = ", ".join("?" * len(backend_ids))
        rows = await self._store.fetch(
            f"SELECT backend_id FROM shots WHERE backend_id IN ({marks})", backend_ids
        )
        return {int(row[0]) for row in rows}

    async def mark_delivered(self, shot_ids: list[int]) -> None:
        """The chat took these shots' images: one transaction, so a restart resends either
        all of one album or none of it."""
        async with self._store.transaction(writes_tunes=False) as db:
            await db.executemany(
                "UPDATE shots SET delivered = 1 WHERE id = ?", [(shot_id,) for shot_id in shot_ids]
            )

    async def holds(self, shoot_id: int) -> tuple[int, int]:
        """(per-image holds the shoot took, how many of them are captured) in the ledger."""
        rows = await self._store.fetch(
            "SELECT COALESCE(SUM(kind = ?), 0), COALESCE(SUM(kind = ?), 0) FROM ledger"
            " WHERE job_kind = ? AND job_id = ?",
            (Entry.HOLD, Entry.CAPTURE, JobKind.SHOOT, shoot_id),
        )
        return int(rows[0][0]), int(rows[0][1])

    async def update_shot(self, shot_id: int, **changes: Any) -> Shot:
        if "result_files" in changes:
            changes["result_files"] = json.dumps(changes["result_files"])
        async with self._store.one_statement(writes_tunes=False) as db:
            row = await Store._update(db, "shots", shot_id, changes)
        shot: Shot = _SHOT.convert(row, Shot)
        return shot
