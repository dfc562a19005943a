"""Shoots on Telegram end to end, through the fake Bot API and the fake Astria: the /packs
picker and its confirm button, one edited status message, the images as albums of up to 10,
the ZIP split under the upload limit, and the heart that likes a shot on the backend."""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import AsyncIterator

from bot.app import running_core, serving
from bot.chat.telegram import TelegramFrontend
from bot.config import Settings
from bot.core.archives import ARCHIVE_OVERHEAD_BYTES, ENTRY_OVERHEAD_BYTES
from tests.fakes.astria_server import FakeAstria
from tests.fakes.telegram_api import ApiCall, FakeTelegram, Users, buttons
from tests.test_telegram import ALICE, sent_text, train_model

TRAVEL = {"man": [f"ohwx man, in {city}" for city in ("Rome", "Kyoto", "Lima", "Oslo")]}
"""4 prompts x 3 images: 12, more than one album holds."""


@contextlib.asynccontextmanager
async def bot_with(settings: Settings) -> AsyncIterator[TelegramFrontend]:
    async with running_core(settings) as core:
        frontend = TelegramFrontend(core, album_wait_s=0.3)
        async with serving(core, [frontend]):
            yield frontend


def photos_in(call: ApiCall) -> int:
    return len(call.params["media"]) if call.method == "sendMediaGroup" else 1


async def test_packs_picker_confirm_albums_zip_parts_and_likes(
    fake_tg: FakeTelegram, users: Users, tg_settings: Settings, fake_astria: FakeAstria
) -> None:
    travel = fake_astria.packs.add_pack("travel", "Travel", TRAVEL, num_images=3)
    async with bot_with(tg_settings) as frontend:
        await train_model(fake_tg, users, ALICE)

        users.message(ALICE, text="/packs")
        listing = await fake_tg.wait_for(sent_text(ALICE, "Photoshoot packs for"))
        picker = buttons(listing.params)
        assert "1. Travel: 12 images" in picker and len(picker) == 2  # and Corporate Headshots
        users.press(ALICE, listing.result, picker["1. Travel: 12 images"])
        details = await fake_tg.wait_for(sent_text(ALICE, "It makes 12 images of man #1"))
        confirm = buttons(details.params)
        assert list(confirm) == ["Make 12 images"]
        assert not fake_astria.find_requests("POST", "/p/")  # looking runs nothing

        fake_astria.hold_prompts_with("Oslo")  # the ZIP waits until the limits below are set
        users.press(ALICE, details.result, confirm["Make 12 images"])
        await fake_tg.wait_for(sent_text(ALICE, "Travel: making 12 images of man #1"))
        first_album = await fake_tg.wait_for(
            lambda c: c.method in ("sendMediaGroup", "sendPhoto") and c.chat_id == ALICE
        )
        image_size = max(len(data) for data in first_album.files.values())
        parts_of_three = ARCHIVE_OVERHEAD_BYTES + 3 * (image_size + ENTRY_OVERHEAD_BYTES)
        frontend.notifier.archive_limit = parts_of_three  # type: ignore[attr-defined]
        fake_tg.upload_limits["document"] = parts_of_three
        fake_astria.hold_prompts_with(None)
        await fake_tg.wait_for(sent_text(ALICE, "Travel is done: 12 images."), within=20)

    albums = [
        c for c in fake_tg.calls if c.method in ("sendMediaGroup", "sendPhoto") and c.status == 200
        and c.chat_id == ALICE
    ]  # fmt: skip
    assert sum(photos_in(c) for c in albums) == 12  # every image, once
    assert all(photos_in(c) <= 10 for c in albums)
    assert albums[0].params["media"][0]["caption"] == "Travel"

    statuses = [c for c in fake_tg.calls if c.chat_id == ALICE and "of 12 ready" in str(c.params)]
    assert statuses[0].method == "sendMessage" and statuses[-1].method == "editMessageText"
    assert statuses[-1].params["text"] == "Travel: 12 of 12 ready"
    status_id = statuses[0].result["message_id"]
    assert all(int(c.params["message_id"]) == status_id for c in statuses[1:])  # ONE message

    zips = fake_tg.find("sendDocument", ALICE)
    assert len(zips) >= 4 and all(c.status == 200 for c in zips)
    names: list[str] = []
    for call in zips:
        data = call.files["document"]
        assert len(data) <= parts_of_three
        names += zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert sorted(names) == [f"{n:03d}.png" for n in range(1, 13)]

    hearts = [c for c in fake_tg.calls if c.chat_id == ALICE and "♡ 1" in buttons(c.params)]
    assert hearts
    async with bot_with(tg_settings):  # the buttons work after a restart
        message = hearts[0].result
        users.press(ALICE, message, buttons(message)["♡ 1"])
        edit = await fake_tg.wait_for(
            lambda c: c.method == "editMessageReplyMarkup" and "♥ 1" in buttons(c.params)
        )
        [liked] = fake_astria.packs.liked
        assert fake_astria.prompts[liked]["pack_id"] == travel["id"]
        users.press(ALICE, edit.result, buttons(edit.result)["♥ 1"])
        await fake_tg.wait_for(
            lambda c: c.method == "answerCallbackQuery" and "taken back" in str(c.params)
        )
        assert not fake_astria.packs.liked

        prompts = len(fake_astria.prompts)
        users.press(ALICE, message, buttons(message)["✨ More like 1"])
        await fake_tg.wait_for(lambda c: len(fake_astria.prompts) > prompts)
        newest = max(fake_astria.prompts.values(), key=lambda p: p["id"])
        assert "in Rome" in newest["text"]


async def test_packs_and_shoot_without_a_model_say_how_to_get_one(
    fake_tg: FakeTelegram, users: Users, tg_settings: Settings, fake_astria: FakeAstria
) -> None:
    async with bot_with(tg_settings):
        users.message(ALICE, text="/packs")
        await fake_tg.wait_for(sent_text(ALICE, "You have no model yet."))
        users.message(ALICE, text="/shoot travel")
        await fake_tg.wait_for(lambda c: len(fake_tg.find("sendMessage", ALICE)) >= 2)
    answers = [c.params["text"] for c in fake_tg.find("sendMessage", ALICE)]
    assert all("You have no model yet." in answer for answer in answers)
    assert not fake_astria.find_requests("GET", "/packs")  # refused before asking the backend


async def test_a_restart_in_the_middle_of_a_shoot_sends_the_rest_once(
    fake_tg: FakeTelegram, users: Users, tg_settings: Settings, fake_astria: FakeAstria
) -> None:
    fake_astria.packs.add_pack("travel", "Travel", TRAVEL, num_images=3)
    async with bot_with(tg_settings):
        await train_model(fake_tg, users, ALICE)
        fake_astria.hold_prompts_with("Oslo")
        users.message(ALICE, text="/shoot travel")
        details = await fake_tg.wait_for(sent_text(ALICE, "It makes 12 images"))
        users.press(ALICE, details.result, buttons(details.params)["Make 12 images"])
        await fake_tg.wait_for(sent_text(ALICE, "Travel: 9 of 12 ready"), within=20)
    before = sum(photos_in(c) for c in fake_tg.calls if c.method == "sendMediaGroup")
    fake_astria.hold_prompts_with(None)

    async with bot_with(tg_settings):
        await fake_tg.wait_for(sent_text(ALICE, "Travel is done: 12 images."), within=20)
    sent = [c for c in fake_tg.calls if c.method in ("sendMediaGroup", "sendPhoto")]
    assert before == 9 and sum(photos_in(c) for c in sent) == 12  # the rest, once
    [archive] = fake_tg.find("sendDocument", ALICE)
    assert len(zipfile.ZipFile(io.BytesIO(archive.files["document"])).namelist()) == 12
    assert len(fake_astria.find_requests("POST", "/p/")) == 1
