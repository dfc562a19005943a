"""Buttons under results, persistent across restarts: the custom_id holds only a store token.

`discord.ui.DynamicItem` rebuilds a button from any custom_id matching its template, so
presses on messages posted before a restart still arrive. What a button does (reroll, more
like #n, upscale #n) and whose it is live in the store's `actions` table, never in memory.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import discord

from bot.core.store import Store

CUSTOM_ID_PREFIX = "ps:"
BUTTONS_PER_ROW = 5

PressHandler = Callable[[discord.Interaction[Any], str], Awaitable[None]]


class ResultButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=re.escape(CUSTOM_ID_PREFIX) + r"(?P<token>[A-Za-z0-9_-]{4,64})",
):
    """One result button; pressing it hands its store token to the client's handler."""

    def __init__(self, token: str, label: str = "…", row: int | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"{CUSTOM_ID_PREFIX}{token}",
                row=row,
            )
        )
        self.token = token

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> ResultButton:
        label = getattr(item, "label", None) or "…"
        return cls(match["token"], label)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        handler: PressHandler | None = getattr(interaction.client, "on_result_button", None)
        if handler is not None:
            await handler(interaction, self.token)


@dataclass(frozen=True)
class _Kind:
    name: str
    label: str  # `{n}` is the image number
    first_row: int


REROLL = _Kind("reroll", "🔁 Reroll", 0)
VARY = _Kind("vary", "More like #{n}", 1)
UPSCALE = _Kind("upscale", "⬆ Upscale #{n}", 3)


async def result_view(
    store: Store, user_id: int, generation_id: int, numbers: Sequence[int], *, reroll: bool
) -> discord.ui.View:
    """Reroll (optional), then "more like" and "upscale" buttons for each image shown."""
    view = discord.ui.View(timeout=None)
    if reroll:
        action = await store.create_action(user_id, REROLL.name, generation_id=generation_id)
        view.add_item(ResultButton(action.token, REROLL.label, REROLL.first_row))
    for kind in (VARY, UPSCALE):
        for position, number in enumerate(numbers):
            action = await store.create_action(
                user_id, kind.name, generation_id=generation_id, argument=str(number)
            )
            row = kind.first_row + position // BUTTONS_PER_ROW
            view.add_item(ResultButton(action.token, kind.label.format(n=number), row))
    return view
