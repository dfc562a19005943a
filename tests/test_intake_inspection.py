"""Photo intake asks the backend's inspection (issue 15): photos of no one or of several people
are refused with what to do, the rest is kept with a line per problem; on the console,
Telegram and Discord against the fake Astria's `POST /images/inspect`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bot.config import Settings
from bot.core.photos import prepare_photo
from tests.conftest import chat
from tests.fakes.astria_server import FakeAstria
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.telegram_api import FakeTelegram, Users
from tests.imagegen import jpeg_bytes
from tests.test_discord import ALICE as DISCORD_ALICE
from tests.test_discord import (
    ALICE_DM,
    option,
    photo_options,
    slash,
    wait_response,
)
from tests.test_discord import running_bot as running_discord_bot
from tests.test_telegram import ALICE, sent_text, train_model
from tests.test_telegram import running_bot as running_telegram_bot


def as_inspected(data: bytes) -> bytes:
    """The bytes the backend receives for `data`: the normalised photo."""
    return prepare_photo(data).data


async def test_console_refuses_no_face_and_two_people_and_warns_the_rest(
    make_settings: Callable[..., Settings],
    fake_astria: FakeAstria,
    tmp_path: Path,
    photo_dir: Path,
) -> None:
    settings = make_settings()
    folder = tmp_path / "set"
    folder.mkdir()
    photos = {f"p{seed}.jpg": jpeg_bytes(1024, 1024, seed=seed) for seed in range(10, 16)}
    for name, data in photos.items():
        (folder / name).write_bytes(data)
    fake_astria.set_inspection({"includes_multiple_people": True}, as_inspected(photos["p10.jpg"]))
    fake_astria.set_inspection({"name": ""}, as_inspected(photos["p11.jpg"]))
    fake_astria.set_inspection({"blurry": True}, as_inspected(photos["p12.jpg"]))

    first = await chat(settings, f"/photos {photo_dir}\n/train man\n/wait\n")
    assert "is ready" in first
    output = await chat(settings, f"/photos {folder}\n")

    assert "6 photos received: 4 added (4 of 20" in output
    assert "2 unsuitable (see below)" in output
    assert "more than one person: crop to just you" in output
    assert "no face found: send a photo where your face is clearly visible" in output
    assert "blurry: resend a sharper one" in output
    inspected = fake_astria.find_requests("POST", "/images/inspect")
    assert [r.form["name"][0] for r in inspected] == ["person"] * 5 + ["man"] * 6


async def test_with_no_model_yet_problems_are_only_warnings(
    make_settings: Callable[..., Settings], fake_astria: FakeAstria, photo_dir: Path
) -> None:
    fake_astria.set_inspection({"name": "", "includes_multiple_people": True})
    output = await chat(make_settings(), f"/photos {photo_dir}\n")
    assert "5 photos received: 5 added" in output
    assert output.count("no face found") == 5 and "unsuitable" not in output


async def test_a_pet_owner_is_not_refused_for_lacking_a_face(
    make_settings: Callable[..., Settings], fake_astria: FakeAstria, photo_dir: Path
) -> None:
    settings = make_settings()
    await chat(settings, f"/photos {photo_dir}\n/train dog\n/wait\n")
    fake_astria.set_inspection({"name": ""})  # nothing human anywhere
    more = photo_dir.parent / "more"
    more.mkdir()
    for seed in range(10, 14):
        (more / f"{seed}.jpg").write_bytes(jpeg_bytes(1024, 1024, seed=seed))
    output = await chat(settings, f"/photos {more}\n")
    assert "4 photos received: 4 added" in output
    later = fake_astria.find_requests("POST", "/images/inspect")[-4:]
    assert {r.form["name"][0] for r in later} == {"dog"}  # the latest model's class


async def test_telegram_counter_names_the_refused_photo(
    fake_tg: FakeTelegram, users: Users, tg_settings: Settings, fake_astria: FakeAstria
) -> None:
    group = jpeg_bytes(1024, 1024, seed=3)
    fake_astria.set_inspection({"includes_multiple_people": True}, as_inspected(group))
    async with running_telegram_bot(tg_settings):
        await train_model(fake_tg, users, ALICE)
        users.document(ALICE, jpeg_bytes(1024, 1024, seed=1), name="me.jpg", album="a")
        users.document(ALICE, group, name="party.jpg", album="a")
        summary = await fake_tg.wait_for(sent_text(ALICE, "2 photos received", "unsuitable"))
    assert "party.jpg" in summary.params["text"]
    assert "more than one person: crop to just you" in summary.params["text"]


async def test_discord_train_attachments_are_inspected(
    fake_discord: FakeDiscord, dc_settings: Settings, fake_astria: FakeAstria
) -> None:
    fake = fake_discord
    fake_astria.set_inspection({"blurry": True})
    async with running_discord_bot(dc_settings):
        data = [jpeg_bytes(1024, 1024, seed=seed) for seed in range(2)]
        attachments = [fake.attachment(f"{i}.jpg", d) for i, d in enumerate(data)]
        asked = await slash(
            fake,
            "train",
            [option("class", "man"), *photo_options(attachments)],
            user=DISCORD_ALICE,
            channel_id=ALICE_DM,
            attachments=attachments,
        )
        await wait_response(fake, asked, "blurry: resend a sharper one")
