"""Buttons that survive restarts: a button's custom_id holds only a store token.

`discord.ui.DynamicItem` rebuilds a button from any custom_id matching its template, so presses
on messages posted before a restart still arrive. What a button does (reroll, more like #n,
upscale #n, use a model, confirm deletion) and whose it is are stored (`service.new_action`),
never kept in memory. Views made only of these items are not kept by discord.py either, so posting
thousands of results costs no memory.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import discord

from bot.core.records import ActionKind
from bot.core.service import PhotoshootService
from bot.core.texts import text

CUSTOM_ID_PREFIX = "ps:"
BUTTONS_PER_ROW = 5


class PressReceiver(Protocol):
    """The client that handles presses (see frontend.PhotoshootClient)."""

    async def button_pressed(self, interaction: discord.Interaction[Any], token: str) -> None: ...


class ActionButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=re.escape(CUSTOM_ID_PREFIX) + r"(?P<token>[A-Za-z0-9_-]{4,64})",
):
    """One button; pressing it hands its store token to the client."""

    def __init__(
        self,
        token: str,
        label: str = "…",
        row: int | None = None,
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
    ) -> None:
        super().__init__(
            discord.ui.Button(
                label=label, style=style, custom_id=f"{CUSTOM_ID_PREFIX}{token}", row=row
            )
        )
        self.token = token

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> ActionButton:
        return cls(match["token"], getattr(item, "label", None) or "…")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await cast(PressReceiver, interaction.client).button_pressed(interaction, self.token)


@dataclass(frozen=True)
class ButtonSpec:
    """A button to store and show: its label, its action kind and what the action needs."""

    label: str
    kind: ActionKind
    argument: str | None = None
    generation_id: int | None = None
    row: int | None = None
    style: discord.ButtonStyle = discord.ButtonStyle.secondary


async def action_view(
    service: PhotoshootService, user_id: int, specs: Sequence[ButtonSpec]
) -> discord.ui.View:
    """Store one action per button (all belong to `user_id`) and lay the buttons out."""
    view = discord.ui.View(timeout=None)
    for spec in specs:
        token = await service.new_action(
            user_id, spec.kind, generation_id=spec.generation_id, argument=spec.argument
        )
        view.add_item(ActionButton(token, spec.label, spec.row, spec.style))
    return view


def result_buttons(generation_id: int, numbers: Sequence[int], *, reroll: bool) -> list[ButtonSpec]:
    """Reroll (on the first message of a set), then "more like" and "upscale" per image shown.

    Rows: reroll, two rows of "more like", two of "upscale": room for the 10 files a message
    can hold.
    """
    specs = []
    if reroll:
        label = text("button.reroll")
        specs.append(ButtonSpec(label, ActionKind.REROLL, generation_id=generation_id, row=0))
    for kind, key, first_row in (
        (ActionKind.VARIATION, "button.more_like", 1),
        (ActionKind.UPSCALE, "button.upscale", 3),
    ):
        specs += [
            ButtonSpec(
                text(key, number=number),
                kind,
                argument=str(number),
                generation_id=generation_id,
                row=first_row + position // BUTTONS_PER_ROW,
            )
            for position, number in enumerate(numbers)
        ]
    return specs
