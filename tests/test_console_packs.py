"""Packs on the console, end to end against the fake Astria: `/packs` lists the packs for the
class of the user's model with size and price, `/packs <pick>` shows one with what a run
makes, and bad picks get a clear answer (no model, unknown pack, a pack for another class)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bot.config import Settings
from tests.conftest import chat
from tests.fakes.astria_server import FakeAstria


async def test_packs_lists_the_packs_for_the_models_class_and_a_pick_shows_one(
    make_settings: Callable[..., Settings], photo_dir: Path, fake_astria: FakeAstria
) -> None:
    fake_astria.packs.add_pack("bridal", "Bridal", {"woman": ["ohwx woman, bride"]})
    fake_astria.packs.add_pack(
        "travel", "Travel", {"man": ["ohwx man, in Rome", "ohwx man, in Kyoto"]}, num_images=3
    )
    output = await chat(
        make_settings(),
        f"/photos {photo_dir}\n/train man\n/wait\n/packs\n/packs 1\n/packs travel\n"
        "/packs bridal\n/packs no-such-pack\n",
    )

    listing = output[output.index("Photoshoot packs for") :]
    assert "(man):" in listing.splitlines()[0]
    shown = listing.split("bot> See one with")[0]
    assert ". Corporate Headshots: 28 images, $3.31\n" in shown  # 7 prompts x 4 images
    assert ". Travel: 6 images\n" in shown
    assert "Bridal" not in shown  # no prompts for a man
    assert "It makes 6 images of man #" in output  # /packs 1: the newest, Travel
    assert output.count("It makes 6 images of man #") == 2  # and by its slug
    assert "Bridal has no prompts for a man. Packs that have: Travel, Corporate Headshots." in (
        output
    )
    assert "There is no pack called “no-such-pack”. /packs lists them." in output
    assert not fake_astria.find_requests("POST", "/p/260/tunes")  # looking runs nothing


async def test_packs_without_a_model_says_how_to_get_one(
    make_settings: Callable[..., Settings], fake_astria: FakeAstria
) -> None:
    output = await chat(make_settings(), "/packs\n/packs 1\n")
    assert output.count("You have no model yet.") == 2
    assert not fake_astria.find_requests("GET", "/packs")  # refused before asking the backend
