"""Answering interactions: one way to reply whatever state the interaction is in, and one place
that turns a failure into a message.

Every handler defers first (Discord drops an interaction not answered within 3 s), so most
answers edit the deferred original response. A `UserError` from the service is the answer
itself; anything else is logged and the user gets a short apology.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

import discord

from bot.core.errors import UserError
from bot.core.records import ChatTarget
from bot.core.texts import text

log = logging.getLogger(__name__)

PLATFORM = "discord"
MESSAGE_LIMIT = 2000
Interaction = discord.Interaction[Any]


def clip(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """Discord refuses longer messages: better the end cut than the message lost."""
    return message if len(message) <= limit else message[: limit - 1] + "…"


def chat_target(
    interaction: Interaction, *, private: bool | None = None, reply_to: int | None = None
) -> ChatTarget:
    """Where a job's status and result go: the interaction's channel.

    `private` defaults to "is this a DM"; an ephemeral exchange in a guild is private too.
    """
    in_dm = interaction.guild_id is None
    return ChatTarget(
        PLATFORM,
        str(interaction.channel_id),
        is_private=in_dm if private is None else private,
        reply_to_message_id=str(reply_to) if reply_to is not None else None,
    )


async def reply(
    interaction: Interaction, answer: str, *, view: discord.ui.View | None = None
) -> None:
    """The answer: the deferred original response is filled in (and its buttons replaced);
    an interaction not answered yet gets an ephemeral message."""
    if interaction.response.is_done():
        await interaction.edit_original_response(content=clip(answer), view=view)
    elif view is not None:
        await interaction.response.send_message(clip(answer), ephemeral=True, view=view)
    else:
        await interaction.response.send_message(clip(answer), ephemeral=True)


async def reporting(interaction: Interaction, work: Awaitable[None]) -> None:
    """Run a handler; tell the user what went wrong if it fails."""
    try:
        await work
        return
    except UserError as exc:
        answer = exc.message
    except Exception:
        log.exception("handling a Discord interaction failed")
        answer = text("error.sorry")
    try:
        await reply(interaction, answer)
    except discord.HTTPException as exc:  # the interaction expired or the chat is gone
        log.warning("could not report an error to the user: %s", exc)
