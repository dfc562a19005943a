"""Usage limits of a metered bot: a cap on what one user runs at once and makes a day, and a
ceiling on the trainings the whole bot starts a day (the operator's cost ceiling).

They count the ledger's holds (bot/core/ledger.py): a running job is an unsettled hold; a day's
images are the units held since midnight UTC and not given back (failed and cancelled jobs do
not count). So the counts survive restarts and /delete, and they are read inside the job's own
transaction, under the store's write lock: two requests can never both take the last place.

Each refusal says what the limit is and when it resets. 0 turns a limit off. Users who are not
charged (admins; everyone with CREDITS=off) are not limited either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import aiosqlite

from bot.core.errors import UserError
from bot.core.ledger import Ledger, start_of_day
from bot.core.records import JobKind
from bot.core.texts import text


@dataclass(frozen=True)
class Limits:
    """The limits; 0 = none (LIMIT_* settings)."""

    running_prompts: int = 2
    """Image sets one user has on the way at once."""
    running_trainings: int = 1
    """Trainings one user has running at once."""
    images_per_day: int = 100
    """Images one user may have made per day (UTC)."""
    trainings_per_day: int = 50
    """Trainings the whole bot starts per day (UTC): the cost ceiling."""


class LimitReached(UserError):
    """A limit refuses the request; the message says which, and when it resets."""


async def check_generation(
    db: aiosqlite.Connection, limits: Limits, account: str, images: int, now: datetime
) -> None:
    """Inside the job's transaction, before its hold: may the account start this set?"""
    if not (limits.running_prompts or limits.images_per_day):
        return
    running, used = await Ledger.usage(  # a running shoot counts as one set
        db, account, (JobKind.GENERATION, JobKind.SHOOT), start_of_day(now)
    )
    if limits.running_prompts and running >= limits.running_prompts:
        raise LimitReached(
            text("limits.running_prompts", count=running, limit=limits.running_prompts)
        )
    if limits.images_per_day and used + images > limits.images_per_day:
        raise LimitReached(
            text(
                "limits.images_per_day",
                count=limits.images_per_day,
                used=used,
                wanted=images,
                resets_in=resets_in(now),
            )
        )


async def check_training(
    db: aiosqlite.Connection, limits: Limits, account: str, now: datetime
) -> None:
    """Inside the tune's transaction, before its hold: may the account start a training?"""
    if not (limits.running_trainings or limits.trainings_per_day):
        return
    running, started = await Ledger.usage(
        db, account, (JobKind.TUNE,), start_of_day(now), everyone=True
    )
    if limits.running_trainings and running >= limits.running_trainings:
        raise LimitReached(text("limits.running_trainings", count=limits.running_trainings))
    if limits.trainings_per_day and started >= limits.trainings_per_day:
        raise LimitReached(
            text(
                "limits.trainings_per_day",
                count=limits.trainings_per_day,
                resets_in=resets_in(now),
            )
        )


def resets_in(now: datetime) -> str:
    """How long until midnight UTC, in words ("5 h 12 min")."""
    left = start_of_day(now) + timedelta(days=1) - now
    minutes = max(1, int(left.total_seconds() // 60))
    return text("limits.duration", hours=minutes // 60, minutes=minutes % 60)
