"""The credit ledger: every movement of credits is a row, and a balance is their sum.

Rows are only ever added (the schema's triggers refuse updates and deletes). What a row is:

- `welcome`: FREE_CREDITS, once per account, written with its first movement;
- `grant` / `take`: an admin gave or took credits (`actor` says who);
- `purchase` / `refund`: credits bought (`payment_ref`: `telegram:<charge id>` or
  `discord:<entitlement id>`) and taken back when the payment is refunded;
- `hold`: a job's price set aside when the job is accepted (written in the job's own
  transaction, see `bot.core.credits`), then settled once: `capture` (the result was delivered:
  the hold is spent, amount 0) or `release` (the job failed, was cancelled, refused or deleted:
  the held credits come back).

Accounts are chat accounts (`telegram:42`, the form ADMIN_IDS uses), not user rows: /delete
removes a user's photos, models and images, not what they paid for.

The balance never goes below zero, whoever writes: `balances` is kept by a trigger and has a
CHECK, so an overdrawing statement fails inside SQLite and its transaction rolls back. At most
one settlement per hold, one credit and one refund per payment, one welcome per account: unique
indexes. Every write goes through the store's one write transaction (its lock), which begins
with `BEGIN IMMEDIATE`, so its reads and writes are one serialised step even with a second
process on the database; settling a hold is one statement (find the open hold and settle it),
atomic by itself.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import aiosqlite

from bot.core.records import (
    GENERATION_UNFINISHED,
    SHOOT_UNFINISHED,
    TUNE_UNFINISHED,
    GenerationState,
    JobKind,
    TuneState,
    sql_in,
)
from bot.core.store import Store, utcnow

Clock = Callable[[], datetime]


class Entry(StrEnum):
    """What a ledger row records (the values are stored)."""

    WELCOME = "welcome"
    GRANT = "grant"
    TAKE = "take"
    PURCHASE = "purchase"
    REFUND = "refund"
    HOLD = "hold"
    CAPTURE = "capture"
    RELEASE = "release"


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    account: str
    kind: Entry
    amount: int
    """The change of the spendable balance (a hold is negative, its capture 0)."""
    units: int
    """Images of a generation's hold, 1 for a training's: what the daily limits count."""
    job_kind: JobKind | None
    job_id: int | None
    hold_id: int | None
    payment_ref: str | None
    actor: str | None
    note: str | None
    created_at: datetime
    settled_as: Entry | None = None
    """For a hold read back with `movements`: how it was settled (None: still held)."""


class Overdrawn(Exception):
    """The account has fewer credits than the movement takes; nothing was written."""

    def __init__(self, account: str, wanted: int, balance: int) -> None:
        super().__init__(f"{account} has {balance} credits, {wanted} wanted")
        self.wanted = wanted
        self.balance = balance


class Duplicate(Exception):
    """The payment (or its refund) is in the ledger already; nothing was written."""


_HOLD = Entry.HOLD.value


def _unsettled() -> str:
    """SQL: the hold `h` has no capture or release yet."""
    return "NOT EXISTS (SELECT 1 FROM ledger s WHERE s.hold_id = h.id)"


def _entry(row: aiosqlite.Row) -> LedgerEntry:
    values = dict(row)
    values["kind"] = Entry(values["kind"])
    values["job_kind"] = JobKind(values["job_kind"]) if values["job_kind"] else None
    values["created_at"] = datetime.fromisoformat(values["created_at"])
    if values.get("settled_as"):
        values["settled_as"] = Entry(values["settled_as"])
    return LedgerEntry(**values)


def start_of_day(moment: datetime) -> datetime:
    """Midnight UTC of `moment`'s day: when the daily limits start counting again."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


class Ledger:
    """Reads and writes the ledger; see the module docstring."""

    def __init__(self, store: Store, *, free_credits: int = 0, clock: Clock = utcnow) -> None:
        self._store = store
        self.free_credits = free_credits
        self._clock = clock
        self._welcomed: set[str] = set()
        """Accounts whose welcome row is committed (rows are never deleted): their writes
        skip the welcome statement."""

    # -- reading -----------------------------------------------------------------------------

    async def balance(self, account: str) -> int:
        """Spendable credits; an account without movements has its welcome still to come."""
        rows = await self._store.fetch("SELECT credits FROM balances WHERE account = ?", (account,))
        return int(rows[0][0]) if rows else self.free_credits

    async def movements(self, account: str, limit: int = 8) -> list[LedgerEntry]:
        """The newest movements first, holds with how they were settled; captures are left
        out (they change nothing: their hold is shown as spent). A shoot holds one row per
        image: its rows of one kind and outcome are shown summed, as one movement."""
        rows = await self._store.fetch(
            "SELECT MAX(h.id) AS id, h.account, h.kind, SUM(h.amount) AS amount,"
            " SUM(h.units) AS units, h.job_kind, h.job_id, MAX(h.hold_id) AS hold_id,"
            " h.payment_ref, h.actor, h.note, MAX(h.created_at) AS created_at,"
            " s.kind AS settled_as FROM ledger h LEFT JOIN ledger s ON s.hold_id = h.id"
            f" WHERE h.account = ? AND h.kind != '{Entry.CAPTURE.value}'"
            " GROUP BY CASE WHEN h.job_kind = ? THEN h.kind || ':' || h.job_id || ':'"
            " || COALESCE(s.kind, '') ELSE h.id END ORDER BY id DESC LIMIT ?",
            (account, JobKind.SHOOT, limit),
        )
        return [_entry(row) for row in rows]

    async def payment(self, payment_ref: str) -> tuple[LedgerEntry, LedgerEntry | None] | None:
        """The purchase credited for a payment, and its refund if it was refunded."""
        rows = await self._store.fetch(
            "SELECT * FROM ledger WHERE payment_ref = ? AND kind IN (?, ?) ORDER BY id",
            (payment_ref, Entry.PURCHASE, Entry.REFUND),
        )
        entries = [_entry(row) for row in rows]
        purchase = next((e for e in entries if e.kind == Entry.PURCHASE), None)
        if purchase is None:
            return None
        return purchase, next((e for e in entries if e.kind == Entry.REFUND), None)

    async def totals(self, since: datetime | None = None) -> dict[Entry, int]:
        """Credits moved per kind (since a moment, or ever); `capture` sums what was spent
        (the amounts of the captured holds)."""
        after = (since or datetime.min.replace(tzinfo=UTC)).isoformat()
        rows = await self._store.fetch(
            "SELECT kind, SUM(amount) FROM ledger WHERE created_at >= ? GROUP BY kind", (after,)
        )
        totals = {Entry(kind): int(total or 0) for kind, total in rows}
        spent = await self._store.fetch(
            "SELECT -COALESCE(SUM(h.amount), 0) FROM ledger c JOIN ledger h ON h.id = c.hold_id"
            " WHERE c.kind = ? AND c.created_at >= ?",
            (Entry.CAPTURE, after),
        )
        totals[Entry.CAPTURE] = int(spent[0][0])
        return totals

    # -- writing on their own ----------------------------------------------------------------

    async def grant(self, account: str, amount: int, *, actor: str, note: str | None) -> int:
        """An admin gives credits; returns the new balance."""
        async with self._write() as db:
            await self._insert(db, account, Entry.GRANT, amount, actor=actor, note=note)
        return await self.balance(account)

    async def take(self, account: str, amount: int, *, actor: str, note: str | None) -> int:
        """An admin takes credits (never more than there are: Overdrawn); the new balance."""
        async with self._write() as db:
            await self._insert(db, account, Entry.TAKE, -amount, actor=actor, note=note)
        return await self.balance(account)

    async def purchase(self, account: str, credits: int, *, payment_ref: str, note: str) -> int:
        """Credit a payment once; Duplicate when it was credited before. The new balance."""
        async with self._write() as db:
            await self._insert(
                db, account, Entry.PURCHASE, credits, payment_ref=payment_ref, note=note
            )
        return await self.balance(account)

    async def refund(self, purchase: LedgerEntry, *, actor: str, at_most: int | None = None) -> int:
        """Take a refunded purchase's credits back (Overdrawn when they were spent, Duplicate
        when it was refunded before), or `at_most` that many; the new balance."""
        taken = purchase.amount if at_most is None else min(at_most, purchase.amount)
        async with self._write() as db:
            await self._insert(
                db,
                purchase.account,
                Entry.REFUND,
                -taken,
                payment_ref=purchase.payment_ref,
                actor=actor,
                note=purchase.note,
            )
        return await self.balance(purchase.account)

    async def settle(self, job_kind: JobKind, job_id: int, *, capture: bool) -> int:
        """Capture or release the job's open hold, once; returns the credits given back
        (0 for a capture, or when the job holds nothing: unmetered, or settled before).

        One statement finds the open hold and settles it, so it is atomic on its own (every
        job end pays for it: no more trips than marking the delivery)."""
        kind = Entry.CAPTURE if capture else Entry.RELEASE
        try:
            async with self._store.transaction(writes_tunes=False) as db:
                rows = await db.execute_fetchall(
                    "INSERT INTO ledger (account, kind, amount, units, job_kind, job_id, hold_id,"
                    " created_at) SELECT account, ?, CASE WHEN ? THEN 0 ELSE -amount END, units,"
                    f" job_kind, job_id, id, ? FROM ledger h WHERE h.kind = '{_HOLD}'"
                    f" AND h.job_kind = ? AND h.job_id = ? AND {_unsettled()}"
                    " ORDER BY h.id DESC LIMIT 1 RETURNING amount",
                    (kind, capture, self._now(), job_kind, job_id),
                )
        except sqlite3.IntegrityError:  # settled by another process meanwhile
            return 0
        return next((int(row[0]) for row in rows), 0)

    async def reconcile(self) -> int:
        """Settle the holds whose job ended while nothing settled them (a restart between a
        job's end and its settlement, a job deleted meanwhile); returns how many. Jobs still
        under way keep their holds."""
        settled = 0
        async with self._write() as db:
            holds = await db.execute_fetchall(
                f"SELECT h.* FROM ledger h WHERE h.kind = '{_HOLD}' AND {_unsettled()}"
            )
            for hold in map(_entry, holds):
                capture = await _job_outcome(db, hold)
                if capture is not None:
                    await self._settle(db, hold, capture=capture)
                    settled += 1
        return settled

    # -- writing inside a job's transaction --------------------------------------------------

    async def hold(
        self,
        db: aiosqlite.Connection,
        account: str,
        price: int,
        *,
        units: int,
        job_kind: JobKind,
        job_id: int,
    ) -> None:
        """Set a job's price aside, inside the transaction that records the job (Overdrawn:
        not enough credits, and the whole transaction rolls back)."""
        await self._insert(
            db, account, Entry.HOLD, -price, units=units, job_kind=job_kind, job_id=job_id
        )

    async def release_all(self, db: aiosqlite.Connection, account: str) -> None:
        """Give back every open hold of the account (its jobs are being deleted)."""
        await db.execute(
            "INSERT INTO ledger (account, kind, amount, units, job_kind, job_id, hold_id,"
            f" created_at) SELECT account, '{Entry.RELEASE.value}', -amount, units, job_kind,"
            f" job_id, id, ? FROM ledger h WHERE account = ? AND kind = '{_HOLD}'"
            f" AND {_unsettled()}",
            (self._now(), account),
        )

    @staticmethod
    async def usage(
        db: aiosqlite.Connection,
        account: str,
        job_kinds: tuple[JobKind, ...],
        since: datetime,
        *,
        everyone: bool = False,
    ) -> tuple[int, int]:
        """What the limits count, in one read: the account's jobs of these kinds accepted and
        not settled yet (its running jobs; a shoot, which holds per image, counts once), and
        the units (images, trainings) held since `since` and not given back, by the account or
        (`everyone`) by all accounts. One read for all the kinds: it runs inside the job's
        transaction, whose every trip to the database thread holds up every other write."""
        kinds = ", ".join("?" * len(job_kinds))
        rows = await db.execute_fetchall(
            "SELECT (SELECT COUNT(DISTINCT job_kind || ':' || job_id) FROM ledger h"
            f" WHERE account = ? AND kind = '{_HOLD}' AND job_kind IN ({kinds})"
            f" AND {_unsettled()}),"
            " (SELECT COALESCE(SUM(units), 0) FROM ledger h"
            f" WHERE kind = '{_HOLD}' AND job_kind IN ({kinds}) AND created_at >= ?"
            " AND (? OR account = ?) AND NOT EXISTS (SELECT 1 FROM ledger s"
            f" WHERE s.hold_id = h.id AND s.kind = '{Entry.RELEASE.value}'))",
            (account, *job_kinds, *job_kinds, since.isoformat(), everyone, account),
        )
        running, units = next(iter(rows))
        return int(running), int(units)

    # -- helpers -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._store.transaction(writes_tunes=False) as db:
            yield db

    def _now(self) -> str:
        return self._clock().astimezone(UTC).isoformat()

    async def _settle(self, db: aiosqlite.Connection, hold: LedgerEntry, *, capture: bool) -> None:
        kind, amount = (Entry.CAPTURE, 0) if capture else (Entry.RELEASE, -hold.amount)
        await self._insert(
            db,
            hold.account,
            kind,
            amount,
            units=hold.units,
            job_kind=hold.job_kind,
            job_id=hold.job_id,
            hold_id=hold.id,
        )

    async def _insert(
        self,
        db: aiosqlite.Connection,
        account: str,
        kind: Entry,
        amount: int,
        *,
        units: int = 0,
        job_kind: JobKind | None = None,
        job_id: int | None = None,
        hold_id: int | None = None,
        payment_ref: str | None = None,
        actor: str | None = None,
        note: str | None = None,
    ) -> None:
        """One row, after the account's welcome (written with its first movement)."""
        now = self._now()
        insert = (
            "INSERT INTO ledger (account, kind, amount, units, job_kind, job_id, hold_id,"
            " payment_ref, actor, note, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        if account not in self._welcomed:
            welcome = await db.execute(
                insert + " ON CONFLICT DO NOTHING",
                (account, Entry.WELCOME, self.free_credits, 0, *[None] * 6, now),
            )
            if welcome.rowcount == 0:  # welcomed by an earlier, committed write
                self._welcomed.add(account)
        row = (account, kind, amount, units, job_kind, job_id, hold_id, payment_ref, actor, note)
        try:
            await db.execute(insert, (*row, now))
        except sqlite3.IntegrityError as exc:
            if "CHECK" in str(exc):
                balance = await db.execute_fetchall(
                    "SELECT credits FROM balances WHERE account = ?", (account,)
                )
                raise Overdrawn(account, -amount, int(next(iter(balance))[0])) from None
            if "UNIQUE" in str(exc):
                raise Duplicate(payment_ref or str(hold_id)) from None
            raise


async def _job_outcome(db: aiosqlite.Connection, hold: LedgerEntry) -> bool | None:
    """How a hold's job ended: True = delivered (capture), False = failed, cancelled or gone
    (release), None = still under way (keep holding)."""
    if hold.job_kind == JobKind.SHOOT:
        return await _shoot_outcome(db, hold)
    table, done, unfinished = (
        ("tunes", TuneState.TRAINED, TUNE_UNFINISHED)
        if hold.job_kind == JobKind.TUNE
        else ("generations", GenerationState.DONE, GENERATION_UNFINISHED)
    )
    rows = list(
        await db.execute_fetchall(
            f"SELECT j.state IN ('{done.value}') AS done, j.state {sql_in(unfinished)} AS running,"
            " d.delivered_at IS NOT NULL AS delivered FROM "
            f"{table} j LEFT JOIN deliveries d ON d.job_kind = ? AND d.job_id = j.id"
            " WHERE j.id = ?",
            (hold.job_kind, hold.job_id),
        )
    )
    if not rows:
        return False  # deleted with its user
    done_now, running, delivered = (bool(value) for value in rows[0])
    if running or (done_now and not delivered):
        return None
    return done_now


async def _shoot_outcome(db: aiosqlite.Connection, hold: LedgerEntry) -> bool | None:
    """A shoot captures one hold per image as each is delivered, so a hold left open when the
    shoot ended is an image that never came (or one delivered just before a crash): released."""
    rows = list(
        await db.execute_fetchall(
            f"SELECT state {sql_in(SHOOT_UNFINISHED)} FROM shoots WHERE id = ?", (hold.job_id,)
        )
    )
    return None if rows and rows[0][0] else False
