"""The retention notice (issue 15) on Telegram and Discord: a user whose media the sweep removed
is told once, privately, on their next visit; never in a group."""

from __future__ import annotations

from bot.config import Settings
from tests.fakes.astria_server import FakeAstria
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.telegram_api import FakeTelegram, Users
from tests.test_discord import ALICE as DISCORD_ALICE
from tests.test_discord import ALICE_DM, slash, train, wait_response
from tests.test_discord import running_bot as running_discord_bot
from tests.test_retention import sweep_later
from tests.test_telegram import (
    ALICE,
    GROUP,
    sent_text,
    train_model,
)
from tests.test_telegram import running_bot as running_telegram_bot

NOTICE = "Welcome back! You had not used me for 30 days"


def said(fake: FakeTelegram, chat_id: int, words: str) -> list[str]:
    texts = [call.params.get("text", "") for call in fake.find("sendMessage", chat_id)]
    return [text for text in texts if words in text]


async def test_telegram_tells_the_user_once_in_their_private_chat(
    fake_tg: FakeTelegram, users: Users, tg_settings: Settings, fake_astria: FakeAstria
) -> None:
    async with running_telegram_bot(tg_settings):
        await train_model(fake_tg, users, ALICE)
    assert (await sweep_later(tg_settings, 31)).models == 1
    assert fake_astria.tunes == {}

    async with running_telegram_bot(tg_settings):
        users.message(ALICE, GROUP, "/help")  # a group: not a word about it there
        await fake_tg.wait_for(sent_text(GROUP, "private chat"))
        users.message(ALICE, text="/status")
        await fake_tg.wait_for(sent_text(ALICE, "Nothing is running"))
        users.message(ALICE, text="/models")  # the next update: nothing more to tell
        await fake_tg.wait_for(sent_text(ALICE, "no models yet"))
    told = said(fake_tg, ALICE, NOTICE)
    assert len(told) == 1 and "1 models and 0 image sets" in told[0]
    assert said(fake_tg, GROUP, NOTICE) == []


async def test_discord_tells_the_user_once_by_dm(
    fake_discord: FakeDiscord, dc_settings: Settings, fake_astria: FakeAstria
) -> None:
    fake = fake_discord
    async with running_discord_bot(dc_settings):
        await train(fake)
    assert (await sweep_later(dc_settings, 31)).models == 1

    async with running_discord_bot(dc_settings):
        asked = await slash(fake, "status", [], user=DISCORD_ALICE, channel_id=ALICE_DM)
        await wait_response(fake, asked, "Nothing is running")
        asked = await slash(fake, "models", [], user=DISCORD_ALICE, channel_id=ALICE_DM)
        await wait_response(fake, asked, "no models yet")
    told = [m for m in fake.posted.values() if NOTICE in m.content]
    assert len(told) == 1
