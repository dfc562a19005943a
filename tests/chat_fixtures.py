"""The fake chat servers' fixtures, for every test module (tests/conftest.py registers this
module as a plugin): the fake Telegram Bot API with its users, the fake Discord with its guild,
and settings aimed at each. The Discord world's ids are here because its fixture builds the
guild; tests/test_discord.py names them for the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import discord
import pytest
import yarl
from discord.gateway import DiscordWebSocket

from bot.config import Settings
from tests.fakes.discord_api import FakeDiscord, user_payload
from tests.fakes.telegram_api import TOKEN, FakeTelegram, Users

DISCORD_ALICE = user_payload(310_000_000_000_000_001, "alice")
DISCORD_MALLORY = user_payload(310_000_000_000_000_003, "mallory")
GUILD, CHANNEL = 330_000_000_000_000_001, 330_000_000_000_000_002


@pytest.fixture
def fake_tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def users(fake_tg: FakeTelegram) -> Users:
    return Users(fake_tg)


@pytest.fixture
def tg_settings(make_settings: Callable[..., Settings], fake_tg: FakeTelegram) -> Settings:
    return make_settings(
        telegram_bot_token=TOKEN,
        telegram_api_url=fake_tg.api_url,
        telegram_file_url=fake_tg.file_url,
    )


@pytest.fixture
async def fake_discord(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    """The fake, with discord.py's REST base and gateway address aimed at it."""
    async with FakeDiscord() as fake:
        fake.guilds.append(fake.guild_create(GUILD, CHANNEL, owner_id=int(DISCORD_MALLORY["id"])))
        monkeypatch.setattr(discord.http.Route, "BASE", fake.base)
        monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))
        yield fake


@pytest.fixture
def dc_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(discord_bot_token="fake.discord.token")
