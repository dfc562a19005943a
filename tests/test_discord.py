"""The Discord frontend end to end: the real discord.py client, its REST calls and its gateway
connection aimed at a fake Discord, with the fake Astria behind the bot. Tests act as Discord
users by dispatching gateway events and read what the chats would show from what the fake
recorded."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.app import chat_frontends, running_core, serving
from bot.chat.base import Core
from bot.chat.discord import DiscordFrontend
from bot.chat.discord.uploads import batches, fit_all
from bot.config import ConfigError, Settings
from tests.chat_fixtures import CHANNEL, DISCORD_ALICE, DISCORD_MALLORY, GUILD
from tests.fakes.astria_server import FakeAstria
from tests.fakes.discord_api import (
    Call,
    FakeDiscord,
    Json,
    Posted,
    _command_problems,
)
from tests.imagegen import jpeg_bytes

ALICE, MALLORY = DISCORD_ALICE, DISCORD_MALLORY
ALICE_DM = 320_000_000_000_000_001
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | (1 << 15)  # members, presences, message content
EPHEMERAL = 64


@contextlib.asynccontextmanager
async def running_bot(settings: Settings) -> AsyncIterator[Core]:
    """The bot as `photoshoot-bot run` starts it: core, the frontends its settings ask for (here
    Discord alone), then the jobs."""
    async with running_core(settings) as core:
        frontends = chat_frontends(core)
        assert [type(frontend) for frontend in frontends] == [DiscordFrontend]
        async with serving(core, frontends):
            yield core


def option(name: str, value: Any, kind: int = 3) -> Json:
    return {"name": name, "type": kind, "value": value}


def photo_options(attachments: list[Json]) -> list[Json]:
    return [option(f"photo{n}", a["id"], 11) for n, a in enumerate(attachments, start=1)]


def photos(fake: FakeDiscord, count: int, first_seed: int = 0) -> list[Json]:
    return [
        fake.attachment(f"me{seed}.jpg", jpeg_bytes(1024, 1024, seed=seed))
        for seed in range(first_seed, first_seed + count)
    ]


async def slash(fake: FakeDiscord, name: str, options: list[Json], **where: Any) -> Json:
    """A user runs a slash command; returns the interaction payload."""
    payload = fake.command(name, options, **where)
    await fake.dispatch("INTERACTION_CREATE", payload)
    return payload


async def wait_text(fake: FakeDiscord, channel_id: int, *words: str) -> Posted:
    """The first message in the channel (posted or edited) containing every word."""

    def find() -> Posted | None:
        return next(
            (m for m in fake.messages_in(channel_id) if all(w in m.content for w in words)), None
        )

    return await fake.wait_for(find)


async def wait_files(fake: FakeDiscord, channel_id: int, after: int = 0) -> Posted:
    """The next message with files in the channel, posted after message id `after`."""

    def find() -> Posted | None:
        return next((m for m in fake.messages_in(channel_id) if m.files and m.id > after), None)

    return await fake.wait_for(find)


async def drop_photos(fake: FakeDiscord, attachments: list[Json]) -> Posted:
    """Alice drops files into her DM with the bot; returns the bot's answer."""
    drop = fake.dm_message(ALICE, ALICE_DM, attachments)
    await fake.dispatch("MESSAGE_CREATE", drop)
    return await fake.wait_for(lambda: fake.find_message(ALICE_DM, "received", after=drop))


async def wait_response(fake: FakeDiscord, interaction: Json, words: str) -> Posted:
    """The interaction's response once it says `words`."""

    def find() -> Posted | None:
        response = fake.original_response(interaction)
        return response if response is not None and words in response.content else None

    return await fake.wait_for(find)


def callback_of(fake: FakeDiscord, interaction: Json) -> Call:
    [callback] = fake.find("POST", f"interactions/{interaction['id']}/")
    return callback


def calls_for(fake: FakeDiscord, interaction: Json, attachments: list[Json]) -> list[Call]:
    """The requests made for one interaction: its callback, edits, follow-ups and downloads."""
    names = tuple(f"cdn/{a['id']}-" for a in attachments)
    return [
        call
        for call in fake.calls
        if interaction["token"] in call.path or call.path.startswith(names)
    ]


async def train(
    fake: FakeDiscord, user: Json = ALICE, channel: int = ALICE_DM, guild_id: int | None = None
) -> Json:
    """/train man with four photos (in the user's DM unless told otherwise); waits until the
    model is ready."""
    attachments = photos(fake, 4, first_seed=int(user["id"]) % 1000)
    interaction = await slash(
        fake,
        "train",
        [option("class", "man"), *photo_options(attachments)],
        user=user,
        channel_id=channel,
        guild_id=guild_id,
        attachments=attachments,
    )
    await fake.wait_for(lambda: fake.find_message(channel, "is ready", after=interaction))
    return interaction


async def ask_in_guild(fake: FakeDiscord, prompt: str) -> Json:
    """Alice runs /imagine in the guild channel; returns the interaction payload."""
    return await slash(
        fake, "imagine", [option("prompt", prompt)], user=ALICE, channel_id=CHANNEL, guild_id=GUILD
    )


async def imagine(fake: FakeDiscord, prompt: str = "astronaut on the moon") -> tuple[Json, Posted]:
    """/imagine in the guild channel; returns the interaction and the message with the files."""
    before = max(fake.posted, default=0)
    interaction = await ask_in_guild(fake, prompt)
    return interaction, await wait_files(fake, CHANNEL, after=before)


async def test_train_in_a_dm_then_imagine_in_a_guild_channel(
    fake_discord: FakeDiscord, dc_settings: Settings, fake_astria: FakeAstria
) -> None:
    fake = fake_discord
    async with running_bot(dc_settings):
        good = photos(fake, 4)
        small = fake.attachment("tiny.jpg", jpeg_bytes(800, 800, seed=50))
        pdf = fake.attachment("cv.pdf", b"%PDF-1.4", content_type="application/pdf")
        attachments = [*good, small, pdf]
        asked = await slash(
            fake,
            "train",
            [option("class", "man"), option("name", "Me"), *photo_options(attachments)],
            user=ALICE,
            channel_id=ALICE_DM,
            attachments=attachments,
        )
        ready = await wait_text(fake, ALICE_DM, "Your model Me is ready")
        assert ready.via == "channel"  # a new message, not an edit of the 15-minute response

        requests = calls_for(fake, asked, attachments)
        assert requests[0] is callback_of(fake, asked)  # deferred before anything else
        assert callback_of(fake, asked).json == {"type": 5, "data": {"flags": EPHEMERAL}}
        downloads = [call for call in requests if call.path.startswith("cdn/")]
        assert len(downloads) == 5  # the PDF was refused by its type, without downloading
        status = fake.original_response(asked)
        assert status is not None and status.ephemeral
        assert "6 photos received: 4 added (4 of 20 in your set)" in status.content
        assert "1 too small" in status.content and "1 not a readable image" in status.content
        assert "Training Me started" in status.content
        assert "Training of Me: done." in status.content  # progress edited the response

        [tune] = fake_astria.tunes.values()
        assert len(fake_astria.training_images[tune["id"]]) == 4
        for request in fake_astria.requests:  # bytes were uploaded, never a Discord URL
            sent = repr((request.query, request.form, request.json))
            assert "cdn/" not in sent and "hm=signed" not in sent

        interaction, result = await imagine(fake)
        assert callback_of(fake, interaction).json == {"type": 5}  # public: results are shown
        assert result.via == "followup" and not result.ephemeral
        assert result.content.startswith(f"<@{ALICE['id']}> “astronaut on the moon”")
        assert [name for name, _ in result.files] == ["1.png", "2.png", "3.png", "4.png"]
        assert all(data.startswith(b"\x89PNG") for _, data in result.files)
        more, upscale = [f"✨ #{n}" for n in range(1, 5)], [f"⬆ #{n}" for n in range(1, 5)]
        assert list(result.buttons) == ["🔁 Reroll", *more, *upscale]
        assert all(custom_id.startswith("ps:") for custom_id in result.buttons.values())
        done = fake.original_response(interaction)
        assert done is not None and "Done." in done.content
        assert fake.messages_in(ALICE_DM)[-1] is ready  # nothing of the guild went to the DM

    assert fake.identify is not None
    assert fake.identify["intents"] & PRIVILEGED_INTENTS == 0
    commands = {command["name"]: command for command in fake.synced_commands["global"]}
    assert set(commands) == {
        "help", "train", "imagine", "models", "status", "cancel", "delete", "language",
        "packs", "shoot",
    }  # fmt: skip
    train_options = commands["train"]["options"]
    assert [o["type"] for o in train_options].count(11) == 10  # ten attachment options


async def test_result_buttons_work_after_a_restart_and_only_for_their_owner(
    fake_discord: FakeDiscord, dc_settings: Settings, fake_astria: FakeAstria
) -> None:
    fake = fake_discord
    async with running_bot(dc_settings) as core:
        await train(fake)
        _, result = await imagine(fake)
        await train(fake)  # a second model, now the active one
        await core.tracker.wait_idle()
    [first] = fake_astria.prompts.values()

    async with running_bot(dc_settings):  # a new process: nothing of the first in memory
        prompts = len(fake_astria.prompts)
        press = fake.button(result, result.buttons["🔁 Reroll"], user=MALLORY, guild_id=GUILD)
        await fake.dispatch("INTERACTION_CREATE", press)
        refusal = await fake.wait_for(lambda: fake.find("POST", f"interactions/{press['id']}/"))
        assert refusal[0].json["type"] == 4
        assert refusal[0].json["data"]["flags"] == EPHEMERAL
        assert "belong to whoever asked" in refusal[0].json["data"]["content"]

        press = fake.button(result, result.buttons["✨ #2"], user=ALICE, guild_id=GUILD)
        await fake.dispatch("INTERACTION_CREATE", press)
        more = await wait_files(fake, CHANNEL, after=result.id)
        assert callback_of(fake, press).json == {"type": 5}
        assert len(fake_astria.prompts) == prompts + 1  # Mallory's press made nothing
        newest = max(fake_astria.prompts.values(), key=lambda prompt: prompt["id"])
        assert (newest["seed"], newest["text"]) == (first["seed"] + 1, first["text"])
        assert len(more.files) == 4

        press = fake.button(result, result.buttons["⬆ #3"], user=ALICE, guild_id=GUILD)
        await fake.dispatch("INTERACTION_CREATE", press)
        upscaled = await wait_files(fake, CHANNEL, after=more.id)
        newest = max(fake_astria.prompts.values(), key=lambda prompt: prompt["id"])
        assert newest["seed"] == first["seed"] + 2 and newest["num_images"] == 1
        assert newest["text"] == first["text"]  # the same model, not the active one
        assert newest["super_resolution"] and newest["hires_fix"]
        assert [name for name, _ in upscaled.files] == ["1.png"]


async def test_a_result_too_big_for_the_upload_limit_is_sent_as_a_smaller_jpeg(
    fake_discord: FakeDiscord, dc_settings: Settings, fake_astria: FakeAstria
) -> None:
    fake = fake_discord
    fake_astria.image_size = (1024, 1024)  # PNGs of about 5 kB
    fake.attachment_size_limit = 4_500  # the limit the interaction reports
    async with running_bot(dc_settings):
        await train(fake)
        _, result = await imagine(fake)
    assert [name for name, _ in result.files] == ["1.jpg", "2.jpg", "3.jpg", "4.jpg"]
    for _, data in result.files:
        assert len(data) <= 4_500
        assert Image.open(io.BytesIO(data)).format == "JPEG"


async def test_train_follow_up_in_the_dm_and_guild_train_stays_private(
    fake_discord: FakeDiscord, dc_settings: Settings, fake_astria: FakeAstria
) -> None:
    fake = fake_discord
    fake.closed_dms.add(int(MALLORY["id"]))
    async with running_bot(dc_settings):
        asked = await slash(
            fake, "train", [option("class", "woman")], user=ALICE, channel_id=ALICE_DM
        )
        await fake.wait_for(
            lambda: (m := fake.original_response(asked)) and "Drop 4 or more" in m.content
        )
        started = await drop_photos(fake, photos(fake, 4))
        assert "4 photos received: 4 added" in started.content
        assert "Training woman #1 started" in started.content
        assert started.payload["message_reference"]["message_id"]  # a reply to the photos
        await wait_text(fake, ALICE_DM, "Your model woman #1 is ready")

        # In a guild, /train is ephemeral; with DMs closed the news comes back to the channel.
        in_guild = await train(fake, MALLORY, CHANNEL, guild_id=GUILD)
        ready = await wait_text(fake, CHANNEL, "is ready")
        assert ready.content.startswith(f"<@{MALLORY['id']}> Your model man #2 is ready")
        assert callback_of(fake, in_guild).json["data"]["flags"] == EPHEMERAL
        shown = [m for m in fake.messages_in(CHANNEL) if m.files or not m.ephemeral]
        assert shown == [ready]  # no photo and no progress in public


@pytest.mark.parametrize("token", ["dies during the job", "is near its end"])
async def test_progress_continues_as_messages_when_the_interaction_token_expires(
    fake_discord: FakeDiscord, dc_settings: Settings, token: str
) -> None:
    fake = fake_discord
    async with running_bot(dc_settings):
        await train(fake)
        before = max(fake.posted)
        created = datetime.now(UTC)
        if token == "is near its end":  # still valid, but the bot leaves the last minute alone
            created -= timedelta(minutes=14, seconds=30)
        asked = fake.command(
            "imagine",
            [option("prompt", "a castle")],
            user=ALICE,
            channel_id=CHANNEL,
            guild_id=GUILD,
            created=created,
        )
        if token == "dies during the job":
            fake.expire(asked)
        await fake.dispatch("INTERACTION_CREATE", asked)
        result = await wait_files(fake, CHANNEL, after=before)
        status = await wait_text(fake, CHANNEL, "Done.")
    response = fake.original_response(asked)
    assert response is not None
    assert result.via == "channel"
    assert int(result.payload["message_reference"]["message_id"]) == response.id
    assert status.via == "channel" and status.id != response.id
    used_token = [call for call in fake.calls if asked["token"] in call.path]
    assert used_token[0] is callback_of(fake, asked)
    if token == "is near its end":  # the prompt is shown at once, then the token is left alone
        assert [(call.method, call.status) for call in used_token[1:]] == [("PATCH", 200)]
        assert response.content == "“a castle”"
    else:  # tried, refused, moved on
        assert {call.status for call in used_token[1:]} == {401}


async def test_bad_input_is_explained_and_leaves_everything_as_it_was(
    fake_discord: FakeDiscord, dc_settings: Settings, fake_astria: FakeAstria
) -> None:
    fake = fake_discord
    async with running_bot(dc_settings):
        asked = await ask_in_guild(fake, "a cat")
        await wait_response(fake, asked, "You have no model yet")

        for first in (0, 10):
            await drop_photos(fake, photos(fake, 10, first))
        over = await drop_photos(fake, photos(fake, 2, 20))  # 22 in the DM: two too many
        assert "2 photos received: none added (20 of 20" in over.content
        assert "2 over the 20-photo limit" in over.content
        await train(fake)  # four more attached: refused too, the set of 20 trains
        [tune] = fake_astria.tunes.values()
        assert len(fake_astria.training_images[tune["id"]]) == 20

        prompts = len(fake_astria.prompts)
        asked = await ask_in_guild(fake, "<lora:4242:1> me")
        await wait_response(fake, asked, "You can only use your own models")
        assert len(fake_astria.prompts) == prompts

        fake_astria.fail_next("POST", "/tunes/666678/prompts", 422, {"error": "Text is too long"})
        asked = await ask_in_guild(fake, "a dog")
        failed = await fake.wait_for(lambda: fake.find_message(CHANNEL, "failed", after=asked))
        assert "Text is too long" in failed.content and not failed.files
        _, result = await imagine(fake)  # and the next one works
        assert len(result.files) == 4


async def test_models_status_cancel_help_and_delete(
    fake_discord: FakeDiscord, dc_settings: Settings, fake_astria: FakeAstria
) -> None:
    fake = fake_discord
    async with running_bot(dc_settings):
        in_dm = {"user": ALICE, "channel_id": ALICE_DM}
        await train(fake)
        await train(fake)  # man #2, now the active one
        listed = await slash(fake, "models", [], **in_dm)
        models = await wait_response(fake, listed, "man #2: ready")
        assert callback_of(fake, listed).json == {"type": 5, "data": {"flags": EPHEMERAL}}
        press = fake.button(models, models.buttons["Use man #1"], user=ALICE)
        await fake.dispatch("INTERACTION_CREATE", press)
        await wait_response(fake, press, "man #1 is now your active model")
        assert callback_of(fake, press).json == {"type": 6}  # the list itself is updated

        asked = await slash(fake, "status", [], **in_dm)
        await wait_response(fake, asked, "Active model: man #1")
        asked = await slash(fake, "cancel", [], **in_dm)
        await wait_response(fake, asked, "Nothing to cancel")
        asked = await slash(fake, "help", [], user=ALICE, channel_id=CHANNEL, guild_id=GUILD)
        helped = await fake.wait_for(lambda: fake.original_response(asked))
        assert "/train" in helped.content and helped.ephemeral

        asked = await slash(fake, "delete", [], **in_dm)
        confirm = await wait_response(fake, asked, "This deletes all your photos")
        press = fake.button(confirm, confirm.buttons["Yes, delete everything"], user=ALICE)
        await fake.dispatch("INTERACTION_CREATE", press)
        await wait_response(fake, press, "Deleted 8 photos, 2 models")
    assert not fake_astria.tunes


async def test_commands_sync_to_the_dev_guild_when_it_is_set(
    fake_discord: FakeDiscord, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(discord_bot_token="fake.discord.token", discord_dev_guild_id=GUILD)
    async with running_bot(settings):
        pass
    assert list(fake_discord.synced_commands) == [str(GUILD)]
    assert len(fake_discord.synced_commands[str(GUILD)]) == 10  # with /language, /packs, /shoot


async def test_a_refused_token_stops_the_start_with_a_clear_message(
    fake_discord: FakeDiscord, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(discord_bot_token="not.the.token")
    async with running_core(settings) as core:
        frontend = DiscordFrontend(core)
        with pytest.raises(ConfigError, match="DISCORD_BOT_TOKEN"):
            await frontend.start()
        assert frontend.client.is_closed()


def test_results_go_out_ten_files_a_message_within_the_request_size(tmp_path: Path) -> None:
    small = [tmp_path / f"{n}.png" for n in range(1, 13)]
    for path in small:
        path.write_bytes(b"\x89PNG" + bytes(100))
    assert [len(batch) for batch in batches(fit_all(small, 10_000))] == [10, 2]

    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(9 * 1024 * 1024))
    uploads = fit_all([big, big, big, big], 10 * 1024 * 1024)
    assert [len(batch) for batch in batches(uploads)] == [2, 2]  # 25 MiB a request at most
    assert [upload.filename for upload in uploads] == ["1.png", "2.png", "3.png", "4.png"]


# -- languages ---------------------------------------------------------------------------------


async def test_a_german_discord_client_gets_german_end_to_end(
    fake_discord: FakeDiscord, dc_settings: Settings, fake_astria: FakeAstria
) -> None:
    """The interaction's `locale` "de": answers, DM photo summaries (messages carry no locale:
    the one of the last interaction is kept), and the commands as Discord shows them."""
    fake = fake_discord
    async with running_bot(dc_settings):
        asked = await slash(fake, "help", [], user=ALICE, channel_id=ALICE_DM, locale="de")
        await wait_response(fake, asked, "Ich mache Fotoshootings von dir. Drei Schritte")

        drop = fake.dm_message(ALICE, ALICE_DM, photos(fake, 2))
        await fake.dispatch("MESSAGE_CREATE", drop)
        summary = await fake.wait_for(lambda: fake.find_message(ALICE_DM, "erhalten", after=drop))
        assert summary.content.startswith("2 Fotos erhalten: 2 hinzugefügt (2 von 20")

        status = await slash(fake, "status", [], user=ALICE, channel_id=ALICE_DM, locale="de")
        await wait_response(fake, status, "Fotos, die auf /train warten: 2.")

        chosen = await slash(
            fake, "language", [option("language", "ru")], user=ALICE, channel_id=ALICE_DM,
            locale="de",
        )  # fmt: skip
        await wait_response(fake, chosen, "Теперь я говорю с вами на языке: Русский.")
        status = await slash(fake, "status", [], user=ALICE, channel_id=ALICE_DM, locale="de")
        await wait_response(fake, status, "Фото ждут /train: 2.")  # the choice beats the locale

    commands = {command["name"]: command for command in fake.synced_commands["global"]}
    assert commands["help"]["name_localizations"]["de"] == "hilfe"
    assert commands["help"]["description_localizations"]["de"] == (
        "Was dieser Bot macht und wie man ihn nutzt"
    )
    assert commands["imagine"]["name_localizations"]["ru"] == "создать"
    assert commands["imagine"]["name_localizations"]["pt-BR"] == "imaginar"
    assert commands["imagine"]["name_localizations"]["es-419"] == "imaginar"
    assert "fr" not in commands["imagine"]["name_localizations"]  # Discord shows the base
    [class_option] = [o for o in commands["train"]["options"] if o["name"] == "class"]
    assert class_option["name_localizations"]["de"] == "klasse"
    man = next(choice for choice in class_option["choices"] if choice["value"] == "man")
    assert man["name_localizations"]["de"] == "Mann"


def test_the_fake_refuses_commands_discord_would_refuse() -> None:
    """So the sync above passing means Discord would take our localisations too."""
    command = {
        "name": "Hilfe",  # upper case
        "description": "x" * 101,
        "name_localizations": {"xx": "hilfe"},  # no such locale
        "options": [{"name": "mit leerzeichen", "description": "d", "type": 3}],
    }
    assert len(_command_problems(command)) == 4
    assert _command_problems({"name": "hilfe", "description": "Hilfe", "options": []}) == []
