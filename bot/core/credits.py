"""Who pays what: prices, who is charged, and the hold each job takes when it is accepted.

A charged ("metered") user's training or image set holds its price in the ledger in the same
transaction that records the job (`store.create_tune(..., also=...)`), after the limits
(`bot.core.limits`) said yes: the job and its hold commit together or not at all, so a restart
at any point neither loses nor doubles a hold. The job tracker then captures the hold when the
result is delivered and releases it when the job fails, is cancelled or refused
(`JobTracker._settle`); /delete releases the holds of the jobs it deletes.

Nobody is charged with CREDITS off, and admins (ADMIN_IDS) never are. With CREDITS=auto the
wiring decides (bot.config.Settings.credits_enabled): on for a bot open to everyone with a
paid backend, off for ALLOWED_IDS deployments and for the console.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import aiosqlite

from bot.core import limits
from bot.core.errors import UserError
from bot.core.ledger import Entry, Ledger, LedgerEntry, Overdrawn
from bot.core.limits import Limits
from bot.core.records import JobKind, User
from bot.core.store import Also, utcnow
from bot.core.texts import text


def _nobody(account: str) -> bool:
    return False


@dataclass(frozen=True)
class Prices:
    """PRICE_TRAINING and PRICE_IMAGE, in credits; a set of n images costs n images."""

    training: int = 50
    image: int = 1

    def generation(self, images: int) -> int:
        return self.image * images


@dataclass(frozen=True)
class CreditsConfig:
    enabled: bool = False
    prices: Prices = field(default_factory=Prices)
    limits: Limits = field(default_factory=Limits)
    exempt: Callable[[str], bool] = _nobody
    """Accounts never charged nor limited, by `platform:id` (admins; console users under
    CREDITS=auto)."""
    can_buy: bool = False
    """Whether /buy offers anything (CREDIT_PACKAGES or DISCORD_SKU_CREDITS is set)."""


@dataclass(frozen=True)
class Quote:
    """What something would cost a metered user, and what they have."""

    price: int
    balance: int


class Credits:
    """The charging rules; see the module docstring."""

    def __init__(self, ledger: Ledger, config: CreditsConfig) -> None:
        self.ledger = ledger
        self.config = config

    def metered(self, user: User) -> bool:
        return self.config.enabled and not self.config.exempt(user.key)

    async def quote(self, user: User, price: int) -> Quote | None:
        """The price and the user's balance, or None when the user is not charged."""
        if not self.metered(user):
            return None
        return Quote(price, await self.ledger.balance(user.key))

    def for_training(self, user: User) -> Also | None:
        """The hold a new tune takes, run in the tune's transaction (None: not charged)."""
        if not self.metered(user):
            return None
        price = self.config.prices.training

        async def hold(db: aiosqlite.Connection, tune_id: int) -> None:
            await limits.check_training(db, self.config.limits, user.key, utcnow())
            await self._hold(db, user, price, 1, JobKind.TUNE, tune_id, "credits.short_training")

        return hold

    def for_generation(self, user: User, images: int) -> Also | None:
        """The hold a new set of `images` takes, run in its transaction (None: not charged)."""
        if not self.metered(user):
            return None
        price = self.config.prices.generation(images)

        async def hold(db: aiosqlite.Connection, generation_id: int) -> None:
            await limits.check_generation(db, self.config.limits, user.key, images, utcnow())
            await self._hold(
                db, user, price, images, JobKind.GENERATION, generation_id, "credits.short_images"
            )

        return hold

    def for_shoot(self, user: User, images: int) -> Also | None:
        """The holds a shoot of `images` takes, in its transaction: one per image, so each
        delivered image captures its own and what never came is released (None: not charged).
        The daily image limit counts them; the running-sets limit counts the shoot as one."""
        if not self.metered(user):
            return None
        price = self.config.prices.image

        async def hold(db: aiosqlite.Connection, shoot_id: int) -> None:
            await limits.check_generation(db, self.config.limits, user.key, images, utcnow())
            for held in range(images):
                try:
                    await self.ledger.hold(
                        db, user.key, price, units=1, job_kind=JobKind.SHOOT, job_id=shoot_id
                    )
                except Overdrawn as exc:
                    balance = exc.balance + held * price
                    raise self._short(images, price * images, balance) from None

        return hold

    def releasing_all(self, user: User) -> Also:
        """For /delete, in its transaction: the user's jobs go, their holds come back."""

        async def release(db: aiosqlite.Connection, user_id: int) -> None:
            await self.ledger.release_all(db, user.key)

        return release

    async def _hold(
        self,
        db: aiosqlite.Connection,
        user: User,
        price: int,
        units: int,
        kind: JobKind,
        job_id: int,
        refusal: str,
    ) -> None:
        try:
            await self.ledger.hold(db, user.key, price, units=units, job_kind=kind, job_id=job_id)
        except Overdrawn as exc:
            raise self._short(units, price, exc.balance, refusal) from None

    def _short(
        self, units: int, price: int, balance: int, refusal: str = "credits.short_images"
    ) -> UserError:
        return UserError(
            text(
                refusal,
                count=units,
                images=units,
                price=amount(price),
                balance=amount(balance),
                buy=self._buy_hint(),
            )
        )

    def _buy_hint(self) -> str:
        return text("credits.buy_hint") if self.config.can_buy else text("credits.ask_admin")

    # -- what /credits shows -----------------------------------------------------------------

    async def summary(self, user: User, set_size: int) -> str:
        """Balance, prices and the last movements (or why nothing is charged)."""
        if not self.config.enabled:
            return text("credits.free")
        if not self.metered(user):
            return text("credits.exempt")
        prices = self.config.prices
        lines = [
            text("credits.balance", balance=amount(await self.ledger.balance(user.key))),
            text(
                "credits.prices",
                training=amount(prices.training),
                count=set_size,
                set_price=amount(prices.generation(set_size)),
            ),
        ]
        movements = await self.ledger.movements(user.key)
        if movements:
            lines.append(text("credits.movements"))
            lines += [movement_line(entry) for entry in movements]
        lines.append(self._buy_hint())
        return "\n".join(lines)


def amount(credits: int) -> str:
    """ "1 credit", "12 credits"."""
    return text("credits.amount", count=credits)


def movement_line(entry: LedgerEntry) -> str:
    """One ledger row as a user reads it."""
    what = text(f"ledger.{entry.kind}")
    if entry.job_kind is not None:
        job = text(f"ledger.job.{entry.job_kind}", id=entry.job_id)
        what = text("ledger.for_job", what=what, job=job)
    if entry.kind == Entry.HOLD:
        what += text(f"ledger.hold_state.{entry.settled_as or Entry.HOLD}")
    if entry.payment_ref:
        what = text("ledger.with_reference", what=what, reference=entry.payment_ref)
    return text("ledger.line", when=entry.created_at, amount=entry.amount, what=what)
