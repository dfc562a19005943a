"""Consent before the first training (issue 15): asked once, stored with its time, no training
without it; on the console, Telegram and Discord against the fake Astria."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.app import operator_consent_text, running_core
from bot.config import ConfigError, Settings
from bot.core.texts import text
from tests.conftest import chat
from tests.fakes.astria_server import FakeAstria
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.telegram_api import TOKEN, FakeTelegram, Users, buttons
from tests.imagegen import jpeg_bytes
from tests.test_discord import ALICE as DISCORD_ALICE
from tests.test_discord import (
    ALICE_DM,
    option,
    photo_options,
    photos,
    slash,
    wait_response,
)
from tests.test_discord import running_bot as running_discord_bot
from tests.test_telegram import ALICE, sent_text
from tests.test_telegram import running_bot as running_telegram_bot

QUESTION = "Before your first training, please confirm"


def tunes_posted(fake_astria: FakeAstria) -> int:
    return len([r for r in fake_astria.find_requests("POST") if r.path == "/tunes"])


async def test_console_asks_once_and_keeps_the_answer_across_restarts(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    settings = make_settings(consent_required=True)
    asked = await chat(settings, f"/photos {photo_dir}\n/train man\n/wait\n")
    assert QUESTION in asked and "/consent" in asked
    assert tunes_posted(fake_astria) == 0  # no training without it; the photos stay pending
    async with running_core(settings) as core:
        [user] = [await core.service.store.get_user(1)]
        assert user is not None and user.consented_at is None
        assert await core.service.pending_photo_count(user) == 5

    answered = await chat(settings, "/consent\n/train man\n/wait\n")
    assert text("consent.given") in answered and "is ready" in answered
    assert QUESTION not in answered
    async with running_core(settings) as core:
        user = await core.service.store.get_user(1)
        assert user is not None and user.consented_at is not None  # stored with its time
        first = user.consented_at

    again = await chat(settings, f"/photos {photo_dir}\n/consent\n/train woman\n/wait\n")
    assert QUESTION not in again and "is ready" in again and tunes_posted(fake_astria) == 2
    async with running_core(settings) as core:
        user = await core.service.store.get_user(1)
        assert user is not None and user.consented_at == first  # the first answer is kept


async def test_the_operator_wording_replaces_the_question(
    make_settings: Callable[..., Settings], photo_dir: Path, tmp_path: Path
) -> None:
    wording = tmp_path / "consent.txt"
    wording.write_text("Only photos of yourself, adults only. Agreed?\n", encoding="utf-8")
    settings = make_settings(consent_required=True, consent_text_file=wording)
    asked = await chat(settings, f"/photos {photo_dir}\n/train man\n")
    assert "Only photos of yourself, adults only. Agreed?" in asked
    assert QUESTION not in asked


def test_an_unreadable_wording_file_stops_the_start(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    for path in (tmp_path / "missing.txt", empty):
        with pytest.raises(ConfigError, match="CONSENT_TEXT_FILE"):
            operator_consent_text(make_settings(consent_text_file=path))


async def test_telegram_asks_with_a_button_then_trains(
    fake_tg: FakeTelegram,
    users: Users,
    make_settings: Callable[..., Settings],
    fake_astria: FakeAstria,
) -> None:
    settings = make_settings(
        telegram_bot_token=TOKEN,
        telegram_api_url=fake_tg.api_url,
        telegram_file_url=fake_tg.file_url,
        consent_required=True,
    )
    async with running_telegram_bot(settings):
        for seed in range(4):
            users.document(ALICE, jpeg_bytes(1024, 1024, seed=seed), name=f"{seed}.jpg")
        await fake_tg.wait_for(sent_text(ALICE, "4 photos received"))
        users.message(ALICE, text="/train man")
        question = await fake_tg.wait_for(sent_text(ALICE, QUESTION))
        assert tunes_posted(fake_astria) == 0
        users.press(ALICE, question.result, buttons(question.params)["✅ I confirm"])
        await fake_tg.wait_for(sent_text(ALICE, "Thank you, noted"))
        users.message(ALICE, text="/train man")
        await fake_tg.wait_for(sent_text(ALICE, "is ready"))
    assert tunes_posted(fake_astria) == 1


async def test_discord_asks_with_a_button_then_trains(
    fake_discord: FakeDiscord, make_settings: Callable[..., Settings], fake_astria: FakeAstria
) -> None:
    fake = fake_discord
    settings = make_settings(discord_bot_token="fake.discord.token", consent_required=True)
    in_dm = {"user": DISCORD_ALICE, "channel_id": ALICE_DM}
    async with running_discord_bot(settings):
        attachments = photos(fake, 4)
        train = [option("class", "man"), *photo_options(attachments)]
        asked = await slash(fake, "train", train, **in_dm, attachments=attachments)
        question = await wait_response(fake, asked, QUESTION)
        assert tunes_posted(fake_astria) == 0
        press = fake.button(question, question.buttons["✅ I confirm"], user=DISCORD_ALICE)
        await fake.dispatch("INTERACTION_CREATE", press)
        await wait_response(fake, press, "Thank you, noted")
        attachments = photos(fake, 4)
        train = [option("class", "man"), *photo_options(attachments)]
        asked = await slash(fake, "train", train, **in_dm, attachments=attachments)
        await fake.wait_for(lambda: fake.find_message(ALICE_DM, "is ready", after=asked))
    assert tunes_posted(fake_astria) == 1
