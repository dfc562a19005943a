"""Update processing order: each chat in order, chats side by side, no chat stalls the rest."""

from __future__ import annotations

import asyncio

from telegram import Update

from bot.chat.telegram.processor import PerChatUpdateProcessor


def update(update_id: int, chat_id: int) -> Update:
    message = {"message_id": update_id, "date": 0, "chat": {"id": chat_id, "type": "private"}}
    return Update.de_json({"update_id": update_id, "message": message}, None)


async def test_a_busy_chat_does_not_stall_the_others() -> None:
    """More updates wait behind one slow chat than there are slots: another chat still runs."""
    processor = PerChatUpdateProcessor(max_concurrent_updates=2)
    release = asyncio.Event()
    order: list[int] = []

    async def handle(update_id: int, wait: bool) -> None:
        if wait:
            await release.wait()
        order.append(update_id)

    busy = [
        asyncio.create_task(processor.process_update(update(n, 1), handle(n, True)))
        for n in range(1, 5)
    ]
    other = asyncio.create_task(processor.process_update(update(9, 2), handle(9, False)))
    await asyncio.wait_for(other, 5)  # before the fix: stuck behind chat 1's queued updates
    release.set()
    await asyncio.gather(*busy)
    assert order == [9, 1, 2, 3, 4]  # chat 1 kept its own order
