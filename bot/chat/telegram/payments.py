"""Telegram Stars: /buy, invoices, the pre-checkout answer, successful payments, refunds.

Stars need no payment provider: an invoice in currency `XTR` with one price and no provider
token. Telegram asks the bot before taking the money (`pre_checkout_query`, to be answered
within 10 seconds) and then sends the payer a message with `successful_payment`; what is
credited and refused is decided by `bot.core.payments`. Refunds (`refundStarPayment`) are
registered with the core for the admins' /refund.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from telegram import Bot, CallbackQuery, LabeledPrice, Message, Update
from telegram.error import BadRequest
from telegram.ext import Application, MessageHandler, PreCheckoutQueryHandler, filters

from bot.chat.base import Core
from bot.chat.telegram.handlers import PLATFORM, ButtonHandler, Context
from bot.chat.telegram.render import choice_keyboard
from bot.core.errors import UserError
from bot.core.payments import STARS, Package, RefundRefused
from bot.core.records import Action, ActionKind, ChatTarget, User
from bot.core.texts import text

log = logging.getLogger(__name__)

ALREADY_REFUNDED = "CHARGE_ALREADY_REFUNDED"
"""Bot API error of a refund asked twice: the stars went back already."""


class StarsPayments:
    """/buy and its buttons, and the payment updates; see the module docstring."""

    def __init__(self, core: Core, bot: Bot) -> None:
        self._service = core.service
        self._payments = core.payments
        self._bot = bot
        core.payments.register_refund(PLATFORM, self.refund)

    @property
    def commands(self) -> dict[str, Callable[[Update, Context], Awaitable[None]]]:
        return {"buy": self.buy}

    @property
    def buttons(self) -> dict[str, ButtonHandler]:
        return {ActionKind.BUY: self._package_pressed}

    def register(self, application: Application) -> None:  # type: ignore[type-arg]
        application.add_handler(PreCheckoutQueryHandler(self.pre_checkout))
        application.add_handler(MessageHandler(filters.SUCCESSFUL_PAYMENT, self.successful_payment))

    # -- buying ------------------------------------------------------------------------------

    async def buy(self, update: Update, context: Context) -> None:
        """The packages on sale, one button each (one package: its invoice at once)."""
        message = update.effective_message
        account = update.effective_user
        assert message is not None and account is not None
        user = await self._service.user(PLATFORM, str(account.id), account.full_name)
        if not self._service.credits.metered(user):
            raise UserError(text("buy.not_needed"))
        packages = self._payments.packages
        if not packages:
            raise UserError(text("buy.nothing_on_sale"))
        if len(packages) == 1:
            await self._send_invoice(message.chat_id, packages[0])
            return
        choices = [(_label(package), f"{package.credits}:{package.stars}") for package in packages]
        keyboard = await choice_keyboard(self._service, user.id, ActionKind.BUY, choices)
        await message.reply_text(text("buy.packages"), reply_markup=keyboard)

    async def _package_pressed(
        self, user: User, action: Action, target: ChatTarget, query: CallbackQuery
    ) -> str:
        credits, _, stars = (action.argument or "").partition(":")
        package = next(
            (p for p in self._payments.packages if f"{p.credits}:{p.stars}" == action.argument),
            None,
        )
        if package is None:  # the offers changed since the button was made
            log.info("package %s:%s is no longer on sale", credits, stars)
            raise UserError(text("checkout.stale"))
        await self._send_invoice(target.chat_id, package)
        return text("buy.invoice_sent")

    async def _send_invoice(self, chat_id: int | str, package: Package) -> Message:
        invoice = self._payments.invoice(package)
        return await self._bot.send_invoice(
            chat_id,
            title=invoice.title,
            description=invoice.description,
            payload=invoice.payload,
            currency=STARS,
            prices=[LabeledPrice(invoice.label, package.stars)],
        )

    # -- Telegram's side ---------------------------------------------------------------------

    async def pre_checkout(self, update: Update, context: Context) -> None:
        """Say yes only to an invoice of ours still on sale; always answer (Telegram waits)."""
        query = update.pre_checkout_query
        assert query is not None
        account = f"{PLATFORM}:{query.from_user.id}"
        try:
            refusal = self._payments.checkout_refusal(
                account, query.invoice_payload, query.currency, query.total_amount
            )
        except Exception:
            log.exception("checking a pre-checkout query failed")
            refusal = text("error.sorry")
        if refusal is None:
            await query.answer(ok=True)
        else:
            log.info("pre-checkout of %s refused: %s", account, refusal)
            await query.answer(ok=False, error_message=refusal)

    async def successful_payment(self, update: Update, context: Context) -> None:
        """The money is taken: credit it (once per charge id) and thank the payer."""
        message = update.effective_message
        assert message is not None and message.successful_payment is not None
        assert message.from_user is not None
        payment = message.successful_payment
        account = f"{PLATFORM}:{message.from_user.id}"
        charge = payment.telegram_payment_charge_id
        try:
            answer = await self._payments.paid(
                account, payment.invoice_payload, payment.currency, payment.total_amount, charge
            )
        except Exception:  # Telegram sends it once: say what to mend by hand
            log.exception(
                "payment telegram:%s of %s (%s) was not credited: /grant it or /refund it",
                charge,
                account,
                payment.invoice_payload,
            )
            raise
        await message.reply_text(answer)

    async def refund(self, user_id: str, charge_id: str) -> None:
        """refundStarPayment; a charge refunded before counts as done."""
        try:
            await self._bot.refund_star_payment(int(user_id), charge_id)
        except BadRequest as exc:
            if ALREADY_REFUNDED in exc.message.upper():
                log.info("charge %s was refunded already", charge_id)
                return
            raise RefundRefused(exc.message) from None


def _label(package: Package) -> str:
    return text(
        "buy.package", credits=text("credits.amount", count=package.credits), stars=package.stars
    )
