"""Retention (issue 15): nothing of a user's likeness is kept longer than it is needed.

Two rules, applied by one daily sweep (`Retention.sweep`, scheduled by `run_daily`):

- Training photos go once their model is trained (KEEP_TRAINING_PHOTOS keeps them): the model
  is what the user came for, and the photos are the most personal thing we hold. Photos of a
  training that failed or was cancelled go back to the pending set, so they stay.
- A user who has not used the bot for RETENTION_DAYS loses their media, here and on the image
  service: models are deleted on the backend (hosted Astria or our worker, the same API), then
  their photos, images and rows here. The user row stays (language, consent, credits), with a
  notice told once on their next visit (`take_notice`).

Crash safety: each user's media goes in the order backend, files, rows; the rows are the mark
of what is done, so a sweep cut short (a restart) leaves users who still have rows, and the
next sweep finishes them; a second sweep after a complete one finds nothing. Every run is
recorded in `retention_runs`; `due` is true when no run finished in the last day, so a restart
runs the sweep at once when a day has passed, and never twice a day otherwise.

Users with a job still running are left for the next sweep (the job tracker owns them). Each
user is expired under their lock (`user_locks`, the one PhotoshootService serialises a user's
operations with) and checked again under it: a user who came back while the sweep ran, or is
mid-operation (a /shoot being recorded, photos arriving), is left alone. The log says how many
of what went; never a path, URL or name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from backends.base import Backend, BackendError, NotFoundError
from bot.core.records import (
    GENERATION_UNFINISHED,
    SHOOT_UNFINISHED,
    TUNE_UNFINISHED,
    JobKind,
    TuneState,
    User,
    sql_in,
)
from bot.core.store import Store, iso, utcnow
from bot.core.texts import text

log = logging.getLogger(__name__)

SWEEP_EVERY = timedelta(days=1)
SEEN_EVERY = timedelta(hours=1)
"""How stale `last_seen_at` may get before a visit writes it again (a write per update would
cost the busiest chats a database trip each; a day's retention does not need more)."""


@dataclass(frozen=True)
class RetentionConfig:
    days: int = 30
    """RETENTION_DAYS: a user inactive this long loses their media; 0 = never."""
    keep_training_photos: bool = False
    """KEEP_TRAINING_PHOTOS: keep a trained model's photos (until /delete or inactivity)."""


@dataclass
class Removed:
    """What one sweep (or one user's expiry) removed: counts only, safe to log and store."""

    users: int = 0
    photos: int = 0
    models: int = 0
    images: int = 0

    def add(self, other: Removed) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def __str__(self) -> str:
        return ", ".join(f"{value} {name}" for name, value in asdict(self).items())


class Retention:
    """The sweep and the visit bookkeeping; see the module docstring."""

    def __init__(self, store: Store, backend: Backend, config: RetentionConfig) -> None:
        self._store = store
        self._backend = backend
        self.config = config
        self._seen: dict[int, datetime] = {}
        self._told: set[int] = set()
        """Users known to have no notice waiting (a sweep that expires them clears this)."""
        self.user_locks: dict[int, asyncio.Lock] = {}
        """One lock per user id, shared with PhotoshootService: one operation at a time."""

    # -- visits ------------------------------------------------------------------------------

    async def seen(self, user: User, now: datetime | None = None) -> None:
        """The user used the bot now: written at most once per SEEN_EVERY (a user stored
        as seen lately, a new one included, costs no write after a restart either)."""
        now = now or utcnow()
        last = self._seen.get(user.id, user.last_seen_at)
        if last is not None and now - last < SEEN_EVERY:
            return
        async with self._store.one_statement(writes_tunes=False) as db:
            await db.execute("UPDATE users SET last_seen_at = ? WHERE id = ?", (iso(now), user.id))
        self._seen[user.id] = now

    async def take_notice(self, user_id: int) -> str | None:
        """What a sweep removed of this user's, once (cleared as it is read); None if nothing.
        Called on every update: a user costs one read per process, and one more after each
        sweep that leaves them a notice. The notice is cleared only as it was read: a sweep
        that wrote a newer one meanwhile leaves it to the next update (it forgets that this
        user was told)."""
        if user_id in self._told:
            return None
        self._told.add(user_id)
        rows = await self._store.fetch(
            "SELECT retention_notice FROM users WHERE id = ?", (user_id,)
        )
        stored = rows[0][0] if rows else None
        if not stored:
            return None
        async with self._store.one_statement(writes_tunes=False) as db:
            cleared = await db.execute(
                "UPDATE users SET retention_notice = NULL WHERE id = ? AND retention_notice = ?",
                (user_id, stored),
            )
        if cleared.rowcount != 1:
            return None
        notice: dict[str, Any] = json.loads(stored)
        return text("retention.removed", **notice)

    # -- the sweep ---------------------------------------------------------------------------

    async def due(self, now: datetime | None = None) -> bool:
        """No sweep finished within the last SWEEP_EVERY (a cut-short one does not count)."""
        last = await self.last_finished()
        return last is None or (now or utcnow()) - last >= SWEEP_EVERY

    async def last_finished(self) -> datetime | None:
        rows = await self._store.fetch(
            "SELECT MAX(finished_at) FROM retention_runs WHERE finished_at IS NOT NULL"
        )
        return datetime.fromisoformat(rows[0][0]) if rows and rows[0][0] else None

    async def sweep(self, now: datetime | None = None) -> Removed:
        """Apply both rules as of `now` (tests pass their own clock); idempotent."""
        now = now or utcnow()
        async with self._store.one_statement() as db:
            cursor = await db.execute(
                "INSERT INTO retention_runs (started_at) VALUES (?)", (iso(now),)
            )
            run_id = cursor.lastrowid
        removed = Removed()
        if not self.config.keep_training_photos:
            removed.photos += await self._trained_photos()
        if self.config.days > 0:
            before = now - timedelta(days=self.config.days)
            for user_id in await self._inactive_users(before):
                removed.add(await self._expire(user_id, before))
        async with self._store.one_statement() as db:
            await db.execute(
                "UPDATE retention_runs SET finished_at = ?, removed = ? WHERE id = ?",
                (iso(now), json.dumps(asdict(removed)), run_id),
            )
        log.info("retention sweep removed %s", removed)
        return removed

    async def run_daily(
        self,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Sweep now if one is due, then once a day, until cancelled. A failed sweep is logged
        and tried again at the next turn (an hour later), never taking the bot down."""
        while True:
            wait = SEEN_EVERY
            try:
                if await self.due(clock()):
                    await self.sweep(clock())
                last = await self.last_finished()
                if last is not None:
                    wait = min(SWEEP_EVERY, max(last + SWEEP_EVERY - clock(), timedelta(0)))
            except Exception:  # a full disk, a locked database: the bot keeps serving
                log.exception("retention sweep failed; trying again in an hour")
            await sleep(max(wait.total_seconds(), 1.0))

    # -- rule 1: training photos -------------------------------------------------------------

    async def _trained_photos(self) -> int:
        """Delete the photos of trained models: files first, then the rows."""
        rows = await self._store.fetch(
            "SELECT p.id, p.path FROM photos p JOIN tunes t ON t.id = p.tune_id WHERE t.state = ?",
            (TuneState.TRAINED.value,),
        )
        return await self._drop_photos([(row[0], row[1]) for row in rows])

    async def forget_training_photos(self, tune_id: int) -> int:
        """Rule 1 for one model, right when it is trained (unless KEEP_TRAINING_PHOTOS)."""
        if self.config.keep_training_photos:
            return 0
        rows = await self._store.fetch("SELECT id, path FROM photos WHERE tune_id = ?", (tune_id,))
        removed = await self._drop_photos([(row[0], row[1]) for row in rows])
        if removed:
            log.info("removed %d training photos of trained tune %s", removed, tune_id)
        return removed

    async def _drop_photos(self, photos: list[tuple[int, str]]) -> int:
        if not photos:
            return 0
        await asyncio.to_thread(self._store.remove_media, [path for _, path in photos])
        async with self._store.transaction() as db:
            await db.executemany("DELETE FROM photos WHERE id = ?", [(pid,) for pid, _ in photos])
        return len(photos)

    # -- rule 2: inactive users --------------------------------------------------------------

    async def _inactive_users(self, before: datetime, only: int | None = None) -> list[int]:
        """Users last seen before `before` who still have media and no running job (`only`:
        whether that one user still is)."""
        one = "" if only is None else " AND u.id = ?"
        rows = await self._store.fetch(
            "SELECT u.id FROM users u WHERE COALESCE(u.last_seen_at, u.created_at) < ?"
            " AND (EXISTS (SELECT 1 FROM photos WHERE user_id = u.id)"
            " OR EXISTS (SELECT 1 FROM tunes WHERE user_id = u.id)"
            " OR EXISTS (SELECT 1 FROM generations WHERE user_id = u.id)"
            " OR EXISTS (SELECT 1 FROM shoots WHERE user_id = u.id))"
            f" AND NOT EXISTS (SELECT 1 FROM tunes WHERE user_id = u.id"
            f" AND state {sql_in(TUNE_UNFINISHED)})"
            f" AND NOT EXISTS (SELECT 1 FROM generations WHERE user_id = u.id"
            f" AND state {sql_in(GENERATION_UNFINISHED)})"
            f" AND NOT EXISTS (SELECT 1 FROM shoots WHERE user_id = u.id"
            f" AND state {sql_in(SHOOT_UNFINISHED)}){one}"
            " ORDER BY u.id",
            (iso(before),) if only is None else (iso(before), only),
        )
        return [row[0] for row in rows]

    async def _expire(self, user_id: int, before: datetime) -> Removed:
        """One inactive user's media, under their lock, if they still are inactive then."""
        async with self.user_locks.setdefault(user_id, asyncio.Lock()):
            if not await self._inactive_users(before, only=user_id):
                return Removed()  # back meanwhile, or a job started: not inactive any more
            return await self._expire_now(user_id)

    async def _expire_now(self, user_id: int) -> Removed:
        """On the backend, then files, then rows (see the module docstring). A backend that
        fails leaves this user whole for the next sweep."""
        tunes = await self._store.fetch(
            "SELECT id, backend_id FROM tunes WHERE user_id = ?", (user_id,)
        )
        generations = await self._store.fetch(
            "SELECT id, backend_id FROM generations WHERE user_id = ?", (user_id,)
        )
        photos = await self._store.fetch("SELECT path FROM photos WHERE user_id = ?", (user_id,))
        shoots = await self._store.fetch("SELECT id FROM shoots WHERE user_id = ?", (user_id,))
        shots = await self._store.fetch(  # a shoot's prompts on the backend (bot/core/shoot_jobs)
            "SELECT backend_id FROM shots WHERE shoot_id IN"
            " (SELECT id FROM shoots WHERE user_id = ?)",
            (user_id,),
        )
        prompt_ids = [row[1] for row in generations] + [row[0] for row in shots]
        try:
            for prompt_id in prompt_ids:
                await _gone(self._backend.delete_prompt, prompt_id)
            for tune in tunes:
                await _gone(self._backend.delete_tune, tune[1])
        except BackendError as exc:
            log.warning("retention: the backend kept user %s's media for now: %s", user_id, exc)
            return Removed()
        await asyncio.to_thread(
            self._store.remove_media,
            [row[0] for row in photos],
            [row[0] for row in generations],
            [row[0] for row in shoots],
        )
        removed = Removed(1, len(photos), len(tunes), len(generations) + len(shots))
        notice = {"days": self.config.days, **asdict(removed)}
        del notice["users"]
        async with self._store.transaction() as db:
            for kind, table in (
                (JobKind.TUNE, "tunes"),
                (JobKind.GENERATION, "generations"),
                (JobKind.SHOOT, "shoots"),
            ):
                await db.execute(
                    f"DELETE FROM deliveries WHERE job_kind = ? AND job_id IN"
                    f" (SELECT id FROM {table} WHERE user_id = ?)",
                    (kind.value, user_id),
                )
            await db.execute("DELETE FROM shoots WHERE user_id = ?", (user_id,))  # shots cascade
            await db.execute("DELETE FROM photos WHERE user_id = ?", (user_id,))
            await db.execute("DELETE FROM generations WHERE user_id = ?", (user_id,))
            await db.execute("DELETE FROM tunes WHERE user_id = ?", (user_id,))
            await db.execute(
                "UPDATE users SET active_tune_id = NULL, retention_notice = ? WHERE id = ?",
                (json.dumps(notice), user_id),
            )
        self._store.forget_cached_user(user_id)
        self._told.discard(user_id)
        return removed


async def _gone(delete: Callable[[int], Awaitable[None]], backend_id: int | None) -> None:
    """Delete one tune or prompt on the backend; one never created or already gone is fine."""
    if backend_id is None:
        return
    with contextlib.suppress(NotFoundError):
        await delete(backend_id)
