"""Selling credits: Telegram Stars invoices and Discord SKUs, each payment credited once.

Telegram Stars (currency `XTR`, no payment provider): /buy offers CREDIT_PACKAGES; an invoice's
payload names its package and when it was issued (`credits:<credits>:<stars>:<unix time>`).
Telegram asks before it takes the money (`pre_checkout_query`): `checkout_refusal` says yes only
to a payload we issued, for a package still on sale at that price, less than INVOICE_LIFETIME
old, paid in XTR at that amount, by someone who may use the bot. The `successful_payment` that
follows is credited once per `telegram_payment_charge_id` (a unique index of the ledger); one we
cannot match (which the check above makes nearly impossible) is refunded at once, never kept.

Discord: an entitlement to a consumable SKU that DISCORD_SKU_CREDITS maps to credits is credited
once per entitlement id; the frontend then consumes it through Discord's API.

Refunds are an admin's decision (`refund`): the platform refunds first (Telegram's
refundStarPayment, registered by the Telegram frontend), then the ledger takes the credits back;
a payment the platform reports as refunded already is recorded as refunded too, so a crash
between the two steps is mended by asking again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from bot.core.credits import Credits, amount
from bot.core.errors import UserError
from bot.core.ledger import Duplicate, Overdrawn
from bot.core.store import utcnow
from bot.core.texts import text

log = logging.getLogger(__name__)

STARS = "XTR"
INVOICE_LIFETIME = timedelta(days=1)
"""An invoice older than this is refused at checkout (prices may have changed since)."""
PAYLOAD_PREFIX = "credits"


@dataclass(frozen=True)
class Package:
    """An offer of CREDIT_PACKAGES: this many credits for this many Telegram Stars."""

    credits: int
    stars: int


@dataclass(frozen=True)
class Invoice:
    """What the Telegram frontend sends as `sendInvoice`."""

    package: Package
    payload: str
    title: str
    description: str
    label: str


@dataclass(frozen=True)
class Credited:
    """A Discord entitlement as the ledger took it."""

    credits: int
    balance: int
    new: bool
    """False when the entitlement had been credited before (it only needs consuming)."""


class RefundRefused(Exception):
    """The platform would not refund; `reason` is its words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Refund = Callable[[str, str], Awaitable[None]]
"""Refund (platform user id, charge id) on the platform; "already refunded" counts as done."""


class Payments:
    """See the module docstring."""

    def __init__(
        self,
        credits: Credits,
        *,
        packages: Sequence[Package] = (),
        sku_credits: Mapping[str, int] | None = None,
        may_buy: Callable[[str], bool] = lambda account: True,
    ) -> None:
        self._credits = credits
        self._ledger = credits.ledger
        self.packages = tuple(packages)
        self.sku_credits = dict(sku_credits or {})
        self._may_buy = may_buy
        self._refunds: dict[str, Refund] = {}
        self._refunding = asyncio.Lock()

    def register_refund(self, platform: str, refund: Refund) -> None:
        self._refunds[platform] = refund

    # -- Telegram Stars ----------------------------------------------------------------------

    def invoice(self, package: Package) -> Invoice:
        prices = self._credits.config.prices
        credits = amount(package.credits)
        issued = int(utcnow().timestamp())
        return Invoice(
            package,
            payload=f"{PAYLOAD_PREFIX}:{package.credits}:{package.stars}:{issued}",
            title=text("buy.invoice_title", credits=credits),
            description=text(
                "buy.invoice_description",
                credits=credits,
                training=amount(prices.training),
                image=amount(prices.image),
            ),
            label=credits,
        )

    def checkout_refusal(self, account: str, payload: str, currency: str, total: int) -> str | None:
        """Why a pre-checkout must be refused (the user reads it), or None to take the money."""
        package, issued = _parse(payload)
        if package is None or currency != STARS or total != package.stars:
            return text("checkout.unknown")
        age = utcnow().timestamp() - issued
        if package not in self.packages or not 0 <= age <= INVOICE_LIFETIME.total_seconds():
            return text("checkout.stale")
        if not self._may_buy(account):
            return text("checkout.blocked")
        return None

    async def paid(self, account: str, payload: str, currency: str, total: int, charge: str) -> str:
        """A successful payment: credited once per charge id; the answer for the payer."""
        package, _ = _parse(payload)
        platform, _, account_id = account.partition(":")
        reference = f"{platform}:{charge}"
        if package is None or currency != STARS or total != package.stars:
            log.warning("payment %s matches no offer (%r); refunding it", reference, payload)
            await self._refunds[platform](account_id, charge)
            return text("buy.refunded_unmatched", stars=total)
        if not self._may_buy(account):  # banned (or left out) since the checkout
            log.warning("payment %s of %s, who may not buy; refunding it", reference, account)
            await self._refunds[platform](account_id, charge)
            return text("buy.refunded_blocked", stars=total)
        credits = amount(package.credits)
        try:
            balance = await self._ledger.purchase(
                account, package.credits, payment_ref=reference, note=f"{total} {currency}"
            )
        except Duplicate:
            return text("buy.already_credited", credits=credits)
        log.info("%s bought %d credits for %d %s", account, package.credits, total, currency)
        return text("buy.thanks", credits=credits, balance=amount(balance))

    # -- Discord SKUs ------------------------------------------------------------------------

    async def entitlement(self, account: str, entitlement_id: str, sku_id: str) -> Credited | None:
        """Credit an entitlement to a credits SKU once; None for SKUs that are not ours."""
        credits = self.sku_credits.get(str(sku_id))
        if credits is None:
            return None
        try:
            balance = await self._ledger.purchase(
                account, credits, payment_ref=f"discord:{entitlement_id}", note=f"SKU {sku_id}"
            )
        except Duplicate:
            return Credited(credits, await self._ledger.balance(account), new=False)
        log.info("%s bought %d credits (Discord SKU %s)", account, credits, sku_id)
        return Credited(credits, balance, new=True)

    # -- refunds (admins) --------------------------------------------------------------------

    async def refund(self, reference: str, *, actor: str) -> str:
        """Refund a purchase on its platform and take its credits back; the admin's answer.
        Refusals (unknown, refunded before, credits spent, the platform says no) raise."""
        found = await self._ledger.payment(reference)
        if found is None:
            raise UserError(text("admin.no_payment", reference=reference))
        purchase, refunded = found
        if refunded is not None:
            raise UserError(text("admin.refunded_before", when=refunded.created_at))
        platform, _, charge = reference.partition(":")
        refund = self._refunds.get(platform)
        if refund is None:
            raise UserError(text("admin.refund_elsewhere", platform=platform.capitalize()))
        who = purchase.account
        async with self._refunding:
            balance = await self._ledger.balance(who)
            if balance < purchase.amount:
                raise UserError(
                    text(
                        "admin.refund_spent",
                        who=who,
                        balance=amount(balance),
                        credits=amount(purchase.amount),
                    )
                )
            try:
                await refund(who.partition(":")[2], charge)
            except RefundRefused as exc:
                raise UserError(text("admin.refund_refused", reason=exc.reason)) from None
            try:
                balance = await self._ledger.refund(purchase, actor=actor)
                taken = purchase.amount
            except Overdrawn as exc:  # spent while the platform refunded: take what is left
                log.warning("%s spent credits during the refund of %s", who, reference)
                balance = await self._ledger.refund(purchase, actor=actor, at_most=exc.balance)
                taken = exc.balance
        log.info("admin %s refunded %s (%s)", actor, reference, who)
        return text(
            "admin.refunded",
            reference=reference,
            who=who,
            credits=amount(taken),
            balance=amount(balance),
        )


def _parse(payload: str) -> tuple[Package | None, float]:
    """The package and issue time an invoice payload names; (None, 0) for one not ours."""
    parts = payload.split(":")
    if len(parts) != 4 or parts[0] != PAYLOAD_PREFIX or not all(p.isdigit() for p in parts[1:]):
        return None, 0.0
    return Package(int(parts[1]), int(parts[2])), float(parts[3])
