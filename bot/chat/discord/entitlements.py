"""Discord premium-app SKUs as credits (DISCORD_SKU_CREDITS maps consumable SKUs to credits).

Discord sells the SKU and tells the bot with an entitlement: the gateway event
ENTITLEMENT_CREATE, and the entitlement list of the application's API. Each entitlement to one
of our SKUs is credited once (the ledger knows it by its id) and then consumed
(`POST /applications/{app}/entitlements/{id}/consume`), which lets the user buy the SKU again.
At every connect (`sweep`) the bot lists the entitlements not consumed yet and does the same,
so a purchase made while the bot was down, or one whose consume failed, is not lost. /buy shows
Discord's own premium buttons, one per SKU. With DISCORD_SKU_CREDITS empty all of this is off.
"""

from __future__ import annotations

import logging
from typing import Any

import discord

from bot.chat.base import Core
from bot.chat.discord.replies import PLATFORM
from bot.core.credits import amount
from bot.core.payments import Credited
from bot.core.texts import text

log = logging.getLogger(__name__)


class Entitlements:
    """Credits and consumes entitlements; see the module docstring."""

    def __init__(self, core: Core, client: discord.Client) -> None:
        self._payments = core.payments
        self._service = core.service
        self._client = client

    @property
    def on_sale(self) -> list[int]:
        """The SKU ids sold for credits."""
        return [int(sku) for sku in self._payments.sku_credits]

    async def received(self, entitlement: discord.Entitlement) -> None:
        """A new (or not yet consumed) entitlement: credit it once, consume it, say thanks."""
        if entitlement.user_id is None or entitlement.consumed or entitlement.deleted:
            return
        account = f"{PLATFORM}:{entitlement.user_id}"
        credited = await self._payments.entitlement(
            account, str(entitlement.id), str(entitlement.sku_id)
        )
        if credited is None:  # another SKU of the app: not ours to consume
            return
        try:
            await entitlement.consume()
        except discord.HTTPException as exc:  # credited; the next sweep consumes it
            log.warning("consuming entitlement %s failed: %s", entitlement.id, exc)
        if credited.new:
            await self._thank(entitlement.user_id, credited)

    async def sweep(self) -> None:
        """Credit and consume what was bought while the bot was away."""
        if not self.on_sale:
            return
        skus = [discord.Object(sku) for sku in self.on_sale]
        async for entitlement in self._client.entitlements(skus=skus, exclude_ended=True):
            await self.received(entitlement)

    def premium_buttons(self) -> discord.ui.View:
        """Discord's purchase buttons, one per SKU on sale."""
        view: discord.ui.View = discord.ui.View(timeout=None)
        for sku in self.on_sale:
            button: discord.ui.Button[Any] = discord.ui.Button(
                style=discord.ButtonStyle.premium, sku_id=sku
            )
            view.add_item(button)
        return view

    async def _thank(self, user_id: int, credited: Credited) -> None:
        """A DM in the buyer's language (a gateway event carries no locale: the stored one)."""
        await self._service.speak_to(PLATFORM, str(user_id))
        try:
            channel = await self._client.create_dm(discord.Object(user_id))
            await channel.send(
                text(
                    "discord.credited",
                    credits=amount(credited.credits),
                    balance=amount(credited.balance),
                )
            )
        except discord.HTTPException as exc:  # DMs closed: the balance shows it anyway
            log.info("could not thank %s for a purchase: %s", user_id, exc)
