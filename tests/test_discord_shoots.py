"""Shoots on Discord end to end, through the fake Discord and the fake Astria: the /packs
select menu and the confirm button, the images in messages of up to 10 files with a heart and
"more like this" per shot, the ZIP, and likes that reach the backend."""

from __future__ import annotations

import io
import zipfile

import pytest

from bot.config import Settings
from tests.fakes.astria_server import FakeAstria
from tests.fakes.discord_api import FakeDiscord, Json, Posted
from tests.test_discord import (
    ALICE,
    CHANNEL,
    GUILD,
    MALLORY,
    running_bot,
    slash,
    train,
    wait_response,
    wait_text,
)

TRAVEL = {"man": [f"ohwx man, in {city}" for city in ("Rome", "Kyoto", "Lima", "Oslo")]}
"""4 prompts x 3 images: 12, more than one message holds."""


def in_guild(fake: FakeDiscord) -> list[Posted]:
    return fake.messages_in(CHANNEL)


@pytest.fixture
def travel(fake_astria: FakeAstria) -> Json:
    """A pack on the fake Astria, for the man class."""
    return fake_astria.packs.add_pack("travel", "Travel", TRAVEL, num_images=3)


async def packs_asked(fake: FakeDiscord) -> tuple[Json, Posted]:
    """Alice trains a model, then asks for /packs in the guild: the interaction, the answer."""
    await train(fake)
    asked = await slash(fake, "packs", [], user=ALICE, channel_id=CHANNEL, guild_id=GUILD)
    return asked, await wait_response(fake, asked, "Photoshoot packs for")


async def test_packs_menu_confirm_batches_zip_and_likes(
    fake_discord: FakeDiscord, dc_settings: Settings, fake_astria: FakeAstria, travel: Json
) -> None:
    fake = fake_discord
    async with running_bot(dc_settings):
        asked, listing = await packs_asked(fake)
        assert listing.ephemeral
        [(menu, options)] = listing.selects.items()
        assert options["1. Travel: 12 images"] == str(travel["id"])
        assert not fake_astria.find_requests("POST", "/p/")

        choice = fake.select(listing, menu, [str(travel["id"])], user=ALICE, guild_id=GUILD)
        await fake.dispatch("INTERACTION_CREATE", choice)
        details = await wait_response(fake, asked, "It makes 12 images of man #1")
        assert list(details.buttons) == ["Make 12 images"]
        assert not fake_astria.find_requests("POST", "/p/")  # choosing runs nothing

        press = fake.button(details, details.buttons["Make 12 images"], user=ALICE, guild_id=GUILD)
        await fake.dispatch("INTERACTION_CREATE", press)
        await wait_text(fake, CHANNEL, "Travel is done: 12 images.")

        with_files = [m for m in in_guild(fake) if m.files]
        images = [m for m in with_files if not m.files[0][0].endswith(".zip")]
        assert sum(len(m.files) for m in images) == 12 and all(len(m.files) <= 10 for m in images)
        assert images[0].content == "Travel"
        names = [name for m in images for name, _ in m.files]
        assert len(set(names)) == 12 and "1-1.png" in names
        [archive] = [m for m in with_files if m.files[0][0].endswith(".zip")]
        zipped = zipfile.ZipFile(io.BytesIO(archive.files[0][1]))
        assert len(zipped.namelist()) == 12
        statuses = [m for m in in_guild(fake) if "of 12 ready" in m.content]
        assert len(statuses) == 1 and statuses[0].content == "Travel: 12 of 12 ready"  # edited

        first = images[0]
        assert {"♡ 1", "✨ More like 1"} <= set(first.buttons)
        heart = first.buttons["♡ 1"]
        like = fake.button(first, heart, user=ALICE, guild_id=GUILD)
        await fake.dispatch("INTERACTION_CREATE", like)
        await fake.wait_for(lambda: fake_astria.packs.liked)
        [liked] = fake_astria.packs.liked
        assert fake_astria.prompts[liked]["pack_id"] == travel["id"]
        assert "in Rome" in fake_astria.prompts[liked]["text"]
        await fake.wait_for(lambda: "♥ 1" in fake.posted[first.id].buttons)
        hearts = fake.posted[first.id].buttons
        assert hearts["♥ 1"] == heart  # the same button, filled
        assert "♡ 2" in hearts and "✨ More like 1" in hearts
        answer = await fake.wait_for(lambda: fake.find_message(CHANNEL, "Liked", after=like))
        assert answer.ephemeral

        prompts = len(fake_astria.prompts)
        more = fake.button(first, first.buttons["✨ More like 1"], user=ALICE, guild_id=GUILD)
        await fake.dispatch("INTERACTION_CREATE", more)
        await fake.wait_for(lambda: len(fake_astria.prompts) > prompts)
        newest = max(fake_astria.prompts.values(), key=lambda p: p["id"])
        assert "in Rome" in newest["text"]


async def test_the_packs_menu_works_after_a_restart_and_only_for_its_owner(
    fake_discord: FakeDiscord, dc_settings: Settings, travel: Json
) -> None:
    fake = fake_discord
    async with running_bot(dc_settings):
        asked, listing = await packs_asked(fake)

    async with running_bot(dc_settings):  # a new process: nothing of the first in memory
        [menu] = listing.selects
        stranger = fake.select(listing, menu, [str(travel["id"])], user=MALLORY, guild_id=GUILD)
        await fake.dispatch("INTERACTION_CREATE", stranger)
        refusal = await fake.wait_for(lambda: fake.find("POST", f"interactions/{stranger['id']}/"))
        assert "belong to whoever asked" in refusal[0].json["data"]["content"]

        choice = fake.select(listing, menu, [str(travel["id"])], user=ALICE, guild_id=GUILD)
        await fake.dispatch("INTERACTION_CREATE", choice)
        details = await wait_response(fake, asked, "It makes 12 images of man #1")
        assert list(details.buttons) == ["Make 12 images"]


async def test_a_shoot_of_an_unknown_pack_says_so(
    fake_discord: FakeDiscord, dc_settings: Settings, travel: Json
) -> None:
    """A user's mistake gets its own answer, not the generic apology."""
    fake = fake_discord
    async with running_bot(dc_settings):
        await train(fake)
        asked = await slash(
            fake, "shoot", [{"name": "pack", "type": 3, "value": "weddings"}], user=ALICE,
            channel_id=CHANNEL, guild_id=GUILD,
        )  # fmt: skip
        answer = await wait_response(fake, asked, "There is no pack called")
    assert answer.content == "There is no pack called “weddings”. /packs lists them."
