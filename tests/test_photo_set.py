"""The set as a whole (issue 15, bot/core/photo_set.py) and hosted Astria's intake: /train warns
about a set of near-duplicates, the attributes inspection saw go into the tune request, and
with hosted Astria the bot runs the model-free checks itself. On scikit-image's packaged
photographs and blurred, darkened and re-encoded copies of them."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from backends.photo_quality import perceptual_hash
from bot.config import Settings
from bot.core.photo_set import characteristics, distinct_photos, set_advice
from bot.core.records import Photo
from tests.conftest import chat
from tests.fakes.astria_server import FakeAstria
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.telegram_api import FakeTelegram, Users
from tests.photos import astronaut, blurred, cameraman, cat, coffee, darkened, jpeg
from tests.test_discord import ALICE as DISCORD_ALICE
from tests.test_discord import (
    ALICE_DM,
    option,
    photo_options,
    slash,
    wait_response,
)
from tests.test_discord import running_bot as running_discord_bot
from tests.test_telegram import ALICE, sent_text
from tests.test_telegram import running_bot as running_telegram_bot

ALL_SIMILAR = "are nearly the same picture"
FEW_POSES = "photos differ; the others nearly repeat them"


def photos_of(*images: Image.Image, attributes: dict[str, str] | None = None) -> list[Photo]:
    return [
        Photo(n, 1, str(n), i.width, i.height, 0, "", str(perceptual_hash(i)), attributes or {})
        for n, i in enumerate(images)
    ]


def reencoded(image: Image.Image) -> Image.Image:
    return Image.open(io.BytesIO(jpeg(image, quality=60))).convert("RGB")


def test_copies_of_one_photo_are_one_pose() -> None:
    copies = photos_of(astronaut(), blurred(astronaut()), darkened(astronaut(), 0.5))
    copies += photos_of(reencoded(astronaut()))
    assert distinct_photos(copies) == (1, 4)
    [advice] = set_advice(copies)
    assert ALL_SIMILAR in advice and "your 4 photos" in advice


def test_few_distinct_poses_get_a_warning_and_a_varied_set_none() -> None:
    few = photos_of(astronaut(), blurred(astronaut()), cameraman(), cat())
    assert distinct_photos(few) == (3, 4)
    [advice] = set_advice(few)
    assert "only 3 of your 4 photos differ" in advice and "At least 4" in advice

    varied = photos_of(astronaut(), cameraman(), cat(), coffee())
    assert distinct_photos(varied) == (4, 4)
    assert set_advice(varied) == ()


def test_photos_never_inspected_are_not_judged() -> None:
    unhashed = [Photo(n, 1, str(n), 1024, 1024, 0, "") for n in range(5)]
    assert set_advice(unhashed) == ()


def test_characteristics_are_what_most_photos_show() -> None:
    photos = photos_of(astronaut(), cameraman(), cat(), attributes={"glasses": "glasses"})
    photos += photos_of(coffee(), attributes={"glasses": "sunglasses", "age": "30 yo"})
    assert characteristics(photos) == {"glasses": "glasses"}  # 3 of 4; age only 1 of 4
    assert characteristics(photos[:2] + photos[3:]) == {"glasses": "glasses"}  # 2 of 3
    assert characteristics(photos[:1] + photos[3:]) == {}  # 1 of 2 is no majority
    assert characteristics(photos_of(astronaut())) == {}


def write_set(folder: Path, images: list[Image.Image]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n, image in enumerate(images):
        (folder / f"photo{n}.jpg").write_bytes(jpeg(image, quality=95))
    return folder


async def test_train_warns_about_a_set_of_copies_and_sends_characteristics(
    make_settings: Callable[..., Settings], fake_astria: FakeAstria, tmp_path: Path
) -> None:
    fake_astria.set_inspection({"glasses": "glasses", "eye_color": "", "age": ""})
    copies = [
        astronaut(),
        darkened(astronaut(), 0.6),
        blurred(astronaut(), 1),
        reencoded(astronaut()),
    ]
    folder = write_set(tmp_path / "copies", copies)
    output = await chat(make_settings(), f"/photos {folder}\n/train woman\n/wait\n")
    assert "4 photos received: 4 added" in output
    assert ALL_SIMILAR in output.split("Training", 1)[1]  # said with "Training started"
    [created] = fake_astria.find_requests("POST", "/tunes")
    sent = {k: v for k, v in created.form.items() if k.startswith("tune[characteristics]")}
    assert sent["tune[characteristics][glasses]"] == ["glasses"]
    assert "tune[characteristics][eye_color]" not in sent  # Astria left it empty
    assert sent["tune[characteristics][ethnicity]"] == ["caucasian"]


async def test_a_varied_set_trains_without_a_warning(
    make_settings: Callable[..., Settings], fake_astria: FakeAstria, tmp_path: Path
) -> None:
    folder = write_set(tmp_path / "varied", [astronaut(), cameraman(), cat(), coffee()])
    output = await chat(make_settings(), f"/photos {folder}\n/train person\n")
    assert "Training person" in output
    assert ALL_SIMILAR not in output and FEW_POSES not in output


async def test_with_hosted_astria_the_bot_checks_sharpness_exposure_and_duplicates_itself(
    make_settings: Callable[..., Settings], fake_astria: FakeAstria, tmp_path: Path
) -> None:
    """The fake answers as Astria does (no measures, every photo fine), so each warning below
    comes from the bot's own model-free checks; the hashes are stored, so a near-duplicate of
    a photo sent in an earlier message is found too."""
    settings = make_settings()
    first = write_set(tmp_path / "first", [astronaut()])
    later = tmp_path / "later"
    later.mkdir()
    (later / "blurry.jpg").write_bytes(jpeg(blurred(cameraman(), 8)))
    (later / "dark.jpg").write_bytes(jpeg(darkened(cat(), 0.1)))
    (later / "again.jpg").write_bytes(jpeg(astronaut(), quality=70))

    output = await chat(settings, f"/photos {first}\n/photos {later}\n")

    assert "3 photos received: 3 added (4 of 20" in output
    assert "“blurry.jpg”: blurry: resend a sharper one" in output
    assert "“dark.jpg”: too dark" in output
    assert "“again.jpg”: nearly the same as another photo: vary pose or place" in output
    assert [line for line in output.splitlines() if "“again.jpg”" in line] == [
        "bot> “again.jpg”: nearly the same as another photo: vary pose or place"
    ]
    assert len(fake_astria.find_requests("POST", "/images/inspect")) == 4
    with sqlite3.connect(settings.database_path) as db:
        hashes = [row[0] for row in db.execute("SELECT phash FROM photos")]
    assert len(hashes) == 4 and all(len(h) == 16 for h in hashes)


def copies_of_one_photo() -> list[bytes]:
    images = [astronaut(), darkened(astronaut(), 0.6), blurred(astronaut(), 1), astronaut()]
    return [jpeg(image, quality=95 - 10 * n) for n, image in enumerate(images)]


async def test_telegram_train_warns_about_copies(
    fake_tg: FakeTelegram, users: Users, tg_settings: Settings
) -> None:
    async with running_telegram_bot(tg_settings):
        for n, data in enumerate(copies_of_one_photo()):
            users.document(ALICE, data, name=f"me{n}.jpg")
        await fake_tg.wait_for(sent_text(ALICE, "4 photos received"))
        users.message(ALICE, text="/train woman")
        await fake_tg.wait_for(sent_text(ALICE, "Training woman #1 started", ALL_SIMILAR))


async def test_discord_train_warns_about_copies(
    fake_discord: FakeDiscord, dc_settings: Settings
) -> None:
    fake = fake_discord
    attachments = [fake.attachment(f"me{n}.jpg", d) for n, d in enumerate(copies_of_one_photo())]
    async with running_discord_bot(dc_settings):
        interaction = await slash(
            fake,
            "train",
            [option("class", "woman"), *photo_options(attachments)],
            user=DISCORD_ALICE,
            channel_id=ALICE_DM,
            attachments=attachments,
        )
        await wait_response(fake, interaction, ALL_SIMILAR)
