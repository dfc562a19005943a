"""Admin commands, the same on every platform: grant or take credits, ban and unban, look a user
up, statistics, refunds. Only ADMIN_IDS may use them, and only in a private chat (a group would
see balances and bans).

Every admin write is in `admin_log` with who did it (grants and takes are in the ledger too,
with the admin as `actor`); every command, reads included, is logged. A banned account's
requests are refused (`Bans` is asked on every update, from memory) and its running jobs are
cancelled, which gives their held credits back. Bans are by chat account, so they outlive
/delete.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from bot.core.credits import amount, movement_line
from bot.core.errors import UserError
from bot.core.ledger import Entry, Ledger, Overdrawn, start_of_day
from bot.core.payments import Payments
from bot.core.records import (
    GENERATION_UNFINISHED,
    TUNE_UNFINISHED,
    GenerationState,
    TuneState,
    User,
    sql_in,
)
from bot.core.service import PhotoshootService
from bot.core.store import Store, utcnow
from bot.core.texts import text

log = logging.getLogger(__name__)

MAX_GRANT = 100_000
"""More than this at once is a typo, not a gift."""
COMMANDS = ("grant", "take", "ban", "unban", "user", "stats", "refund")


@dataclass(frozen=True)
class Ban:
    account: str
    actor: str
    reason: str | None
    created_at: datetime


class Bans:
    """Banned accounts: in memory for the check every update makes, written to `bans`."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._bans: dict[str, Ban] = {}

    async def load(self) -> None:
        rows = await self._store.fetch("SELECT * FROM bans")
        self._bans = {
            row["account"]: Ban(
                row["account"],
                row["actor"],
                row["reason"],
                datetime.fromisoformat(row["created_at"]),
            )
            for row in rows
        }

    def __contains__(self, account: object) -> bool:
        return account in self._bans

    def get(self, account: str) -> Ban | None:
        return self._bans.get(account)

    async def add(self, account: str, *, actor: str, reason: str | None) -> None:
        ban = Ban(account, actor, reason, utcnow())
        async with self._store.transaction(writes_tunes=False) as db:
            await db.execute(
                "INSERT INTO bans (account, actor, reason, created_at) VALUES (?, ?, ?, ?)",
                (account, actor, reason, ban.created_at.isoformat()),
            )
            await _log(db, actor, "ban", account, reason)
        self._bans[account] = ban

    async def remove(self, account: str, *, actor: str) -> None:
        async with self._store.transaction(writes_tunes=False) as db:
            await db.execute("DELETE FROM bans WHERE account = ?", (account,))
            await _log(db, actor, "unban", account, None)
        self._bans.pop(account, None)


async def _log(
    db: aiosqlite.Connection, actor: str, action: str, target: str | None, detail: str | None
) -> None:
    """One line of `admin_log`, inside the transaction of what it records."""
    await db.execute(
        "INSERT INTO admin_log (actor, action, target, detail, created_at) VALUES (?, ?, ?, ?, ?)",
        (actor, action, target, detail, utcnow().isoformat()),
    )


Command = Callable[[User, list[str]], Awaitable[str]]


class AdminDesk:
    """Runs admin commands; `run` answers with the text to show the admin."""

    def __init__(
        self,
        store: Store,
        service: PhotoshootService,
        payments: Payments,
        bans: Bans,
        is_admin: Callable[[str], bool],
    ) -> None:
        self._store = store
        self._service = service
        self._ledger: Ledger = service.credits.ledger
        self._payments = payments
        self.bans = bans
        self.is_admin = is_admin
        self._commands: dict[str, Command] = {
            "grant": self._grant,
            "take": self._take,
            "ban": self._ban,
            "unban": self._unban,
            "user": self._user,
            "stats": self._stats,
            "refund": self._refund,
        }

    async def run(self, actor: User, command: str, argument: str, *, private: bool) -> str:
        """`/command argument` from `actor`, in a private chat or not."""
        if not self.is_admin(actor.key):
            raise UserError(text("admin.only"))
        if not private:
            raise UserError(text("admin.private_only"))
        handler = self._commands.get(command.lower())
        try:
            words = shlex.split(argument)
        except ValueError:
            words = argument.split()
        if handler is None:
            return text("admin.help")
        log.info("admin %s: /%s %s", actor.key, command, argument)
        return await handler(actor, words)

    # -- credits -----------------------------------------------------------------------------

    async def _grant(self, actor: User, words: list[str]) -> str:
        user, credits, reason = await self._amount_for(actor, words)
        balance = await self._ledger.grant(user.key, credits, actor=actor.key, note=reason)
        await self._write_log(actor, "grant", user.key, f"{credits} {reason or ''}".strip())
        return text("admin.granted", credits=amount(credits), who=user.key, balance=amount(balance))

    async def _take(self, actor: User, words: list[str]) -> str:
        user, credits, reason = await self._amount_for(actor, words)
        try:
            balance = await self._ledger.take(user.key, credits, actor=actor.key, note=reason)
        except Overdrawn as exc:
            raise UserError(
                text("admin.take_too_much", who=user.key, balance=amount(exc.balance))
            ) from None
        await self._write_log(actor, "take", user.key, f"{credits} {reason or ''}".strip())
        return text("admin.taken", credits=amount(credits), who=user.key, balance=amount(balance))

    async def _amount_for(self, actor: User, words: list[str]) -> tuple[User, int, str | None]:
        if len(words) < 2:
            raise UserError(text("admin.help"))
        user = await self._target(actor, words[0])
        number = words[1]
        if not number.isdigit() or not 1 <= int(number) <= MAX_GRANT:
            raise UserError(text("admin.bad_amount", most=MAX_GRANT))
        return user, int(number), " ".join(words[2:]) or None

    # -- bans --------------------------------------------------------------------------------

    async def _ban(self, actor: User, words: list[str]) -> str:
        if not words:
            raise UserError(text("admin.help"))
        user = await self._target(actor, words[0])
        if self.is_admin(user.key):
            raise UserError(text("admin.ban_admin", who=user.key))
        if (ban := self.bans.get(user.key)) is not None:
            raise UserError(text("admin.already_banned", who=user.key, since=ban.created_at))
        await self.bans.add(user.key, actor=actor.key, reason=" ".join(words[1:]) or None)
        cancelled = await self._service.cancel_jobs(user)
        if not cancelled:
            return text("admin.banned_idle", who=user.key)
        return text("admin.banned", who=user.key, jobs=", ".join(cancelled))

    async def _unban(self, actor: User, words: list[str]) -> str:
        if not words:
            raise UserError(text("admin.help"))
        user = await self._target(actor, words[0])
        if user.key not in self.bans:
            raise UserError(text("admin.not_banned", who=user.key))
        await self.bans.remove(user.key, actor=actor.key)
        return text("admin.unbanned", who=user.key)

    # -- looking --------------------------------------------------------------------------------

    async def _user(self, actor: User, words: list[str]) -> str:
        if not words:
            raise UserError(text("admin.help"))
        user = await self._target(actor, words[0])
        generations = await self._store.user_generations(user.id)
        ban = self.bans.get(user.key)
        banned = (
            text("admin.user_banned", since=ban.created_at, actor=ban.actor)
            if ban
            else text("admin.user_not_banned")
        )
        lines = [
            text(
                "admin.user",
                who=user.key,
                id=user.id,
                name=user.display_name or "",
                balance=amount(await self._ledger.balance(user.key)),
                models=len(await self._store.user_tunes(user.id)),
                sets=len(generations),
                running=sum(g.state.unfinished for g in generations),
                banned=banned,
            )
        ]
        lines += [movement_line(entry) for entry in await self._ledger.movements(user.key, 12)]
        return "\n".join(lines)

    async def _stats(self, actor: User, words: list[str]) -> str:
        today = start_of_day(utcnow()).isoformat()
        [users] = await self._store.fetch(
            "SELECT COUNT(*), COALESCE(SUM(created_at >= ?), 0) FROM users", (today,)
        )
        failed = TuneState.FAILED.value, GenerationState.FAILED.value
        [tunes] = await self._store.fetch(
            "SELECT COUNT(*), COALESCE(SUM(created_at >= ?), 0), COALESCE(SUM(state = ?), 0),"
            " COALESCE(SUM(state = ? AND updated_at >= ?), 0),"
            f" COALESCE(SUM(state {sql_in(TUNE_UNFINISHED)}), 0) FROM tunes",
            (today, failed[0], failed[0], today),
        )
        done = GenerationState.DONE.value
        images = "json_extract(options, '$.num_images')"
        [sets] = await self._store.fetch(
            f"SELECT COALESCE(SUM(CASE WHEN state = ? THEN {images} END), 0),"
            f" COALESCE(SUM(CASE WHEN state = ? AND created_at >= ? THEN {images} END), 0),"
            " COALESCE(SUM(state = ?), 0), COALESCE(SUM(state = ? AND updated_at >= ?), 0),"
            f" COALESCE(SUM(state {sql_in(GENERATION_UNFINISHED)}), 0) FROM generations",
            (done, done, today, failed[1], failed[1], today),
        )
        ever = await self._ledger.totals()
        since_midnight = await self._ledger.totals(start_of_day(utcnow()))
        return text(
            "admin.stats",
            users=users[0],
            users_today=users[1],
            tunes=tunes[0],
            tunes_today=tunes[1],
            images=sets[0],
            images_today=sets[1],
            failed=tunes[2] + sets[2],
            failed_today=tunes[3] + sets[3],
            queue=tunes[4] + sets[4],
            sold=_sold(ever),
            sold_today=_sold(since_midnight),
            spent=ever.get(Entry.CAPTURE, 0),
            spent_today=since_midnight.get(Entry.CAPTURE, 0),
            granted=ever.get(Entry.GRANT, 0),
        )

    # -- refunds -------------------------------------------------------------------------------

    async def _refund(self, actor: User, words: list[str]) -> str:
        if len(words) != 1:
            raise UserError(text("admin.help"))
        answer = await self._payments.refund(words[0], actor=actor.key)
        await self._write_log(actor, "refund", words[0], None)
        return answer

    # -- helpers -----------------------------------------------------------------------------

    async def _target(self, actor: User, word: str) -> User:
        """The user an admin names: `platform:id`, `#<our id>`, or an id on their platform."""
        platform, _, account_id = word.rpartition(":")
        user: User | None
        if word.startswith("#") and word[1:].isdigit():
            user = await self._store.get_user(int(word[1:]))
        elif account_id and platform and platform.isalpha():
            user = await self._store.find_user(platform.lower(), account_id)
        elif word.isdigit() or (actor.platform == "console" and word.isidentifier()):
            user = await self._store.find_user(actor.platform, word)
        else:
            raise UserError(text("admin.not_a_user", who=word))
        if user is None:
            raise UserError(text("admin.unknown_user", who=word))
        return user

    async def _write_log(
        self, actor: User, action: str, target: str | None, detail: str | None
    ) -> None:
        async with self._store.transaction(writes_tunes=False) as db:
            await _log(db, actor.key, action, target, detail)


def _sold(totals: dict[Entry, int]) -> int:
    """Credits bought, less those taken back by refunds."""
    return totals.get(Entry.PURCHASE, 0) + totals.get(Entry.REFUND, 0)
