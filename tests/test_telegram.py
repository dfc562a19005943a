"""The Telegram frontend end to end: the real PTB Application over HTTP against a fake Bot API
server, with the fake Astria behind the bot. Tests act as Telegram users and read what the
chats would show from the calls the fake recorded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from bot.app import running_core, serving
from bot.chat.base import Core
from bot.chat.telegram import TelegramFrontend
from bot.chat.telegram.webhook import SECRET_HEADER, WEBHOOK_PATH
from bot.config import Settings
from tests.fakes.astria_server import FakeAstria
from tests.fakes.telegram_api import TOKEN, ApiCall, FakeTelegram, Users, buttons
from tests.fakes.threaded_server import free_port
from tests.imagegen import jpeg_bytes

ALICE, BOB, MALLORY = 1001, 1002, 1003
GROUP = -100777


@contextlib.asynccontextmanager
async def running_bot(settings: Settings, **options: Any) -> AsyncIterator[Core]:
    """The bot as `photoshoot-bot run` starts it: core, then the frontend, then the jobs."""
    async with (
        running_core(settings) as core,
        serving(core, [TelegramFrontend(core, album_wait_s=0.3, **options)]),
    ):
        yield core


def sent_text(chat_id: int, *words: str) -> Callable[[ApiCall], bool]:
    """A sendMessage or edit into `chat_id` whose text contains every word."""

    def match(call: ApiCall) -> bool:
        text = call.params.get("text", "")
        return (
            call.method in ("sendMessage", "editMessageText")
            and call.chat_id == chat_id
            and all(word in text for word in words)
        )

    return match


def method_in(method: str, chat_id: int) -> Callable[[ApiCall], bool]:
    return lambda call: call.method == method and call.chat_id == chat_id


def replied_to(call: ApiCall) -> int:
    return int(call.params["reply_parameters"]["message_id"])


async def train_model(fake_tg: FakeTelegram, users: Users, user_id: int, photos: int = 4) -> None:
    """Send photos one by one (they form one batch) and train; wait until it is ready."""
    for seed in range(photos):
        users.document(user_id, jpeg_bytes(1024, 1024, seed=user_id + seed), name=f"{seed}.jpg")
    await fake_tg.wait_for(sent_text(user_id, f"{photos} photos received"))
    users.message(user_id, text="/train man")
    await fake_tg.wait_for(sent_text(user_id, "is ready"))


async def imagine(fake_tg: FakeTelegram, users: Users, user_id: int, chat_id: int) -> ApiCall:
    """/imagine in a chat; returns the message with the result buttons."""
    before = len(fake_tg.find("sendMediaGroup", chat_id))
    users.message(user_id, chat_id, "/imagine astronaut on the moon")
    await fake_tg.wait_for(lambda c: len(fake_tg.find("sendMediaGroup", chat_id)) > before)
    return await fake_tg.wait_for(
        lambda c: sent_text(chat_id, "Image #")(c) and "reply_markup" in c.params
        and c.at >= fake_tg.find("sendMediaGroup", chat_id)[-1].at
    )  # fmt: skip


async def test_dm_album_is_counted_in_one_message_then_train_and_imagine(
    fake_tg: FakeTelegram, users: Users, tg_settings: Settings, fake_astria: FakeAstria
) -> None:
    async with running_bot(tg_settings):
        photos = [jpeg_bytes(1024, 1024, seed=seed) for seed in range(11)]
        photos.append(jpeg_bytes(800, 800, seed=99))
        for index, data in enumerate(photos):
            users.document(ALICE, data, name=f"IMG_{index}.jpg", album="album-1")
        summary = await fake_tg.wait_for(sent_text(ALICE, "received"))
        assert summary.method == "editMessageText"
        assert summary.params["text"].startswith("12 photos received: 11 added (11 of 20")
        assert "1 too small (send it as a file" in summary.params["text"]
        [counter] = fake_tg.find("sendMessage", ALICE)  # the album got ONE message
        assert int(summary.params["message_id"]) == counter.result["message_id"]

        users.message(ALICE, text="/train man")
        await fake_tg.wait_for(sent_text(ALICE, "Training man #1 started"))
        await fake_tg.wait_for(sent_text(ALICE, "Training of man #1: done."))
        await fake_tg.wait_for(sent_text(ALICE, "is ready"))
        [tune] = fake_astria.tunes.values()
        assert len(fake_astria.training_images[tune["id"]]) == 11

        request = users.message(ALICE, text="/imagine astronaut on the moon")
        album = await fake_tg.wait_for(method_in("sendMediaGroup", ALICE))
        assert [item["type"] for item in album.params["media"]] == ["photo"] * 4
        assert album.params["media"][0]["caption"] == "astronaut on the moon"
        assert replied_to(album) == request["message_id"]
        assert all(data.startswith(b"\x89PNG") for data in album.files.values())
        keyboard = await fake_tg.wait_for(
            lambda c: "reply_markup" in c.params and c.chat_id == ALICE
        )
        labels = buttons(keyboard.params)
        assert set(labels) == {"🔁 Reroll", "📁 Full size", "✨ #1", "✨ #2", "✨ #3", "✨ #4"}
        assert all(len(data.encode()) <= 64 for data in labels.values())
        status = await fake_tg.wait_for(sent_text(ALICE, "Queued"))
        assert replied_to(status) == request["message_id"]
        done = await fake_tg.wait_for(sent_text(ALICE, "Done."))
        assert done.method == "editMessageText"
        assert int(done.params["message_id"]) == status.result["message_id"]

    menus = fake_tg.find("setMyCommands")
    defaults = [call for call in menus if "language_code" not in call.params]  # the rest: i18n
    scopes = [call.params["scope"]["type"] for call in defaults]
    assert sorted(scopes) == ["all_group_chats", "all_private_chats"]
    assert_token_never_leaves(fake_tg, fake_astria)


def assert_token_never_leaves(fake_tg: FakeTelegram, fake_astria: FakeAstria) -> None:
    """Neither the chat nor the image service ever sees the bot token (file URLs hold it)."""
    secret = TOKEN.split(":")[1]
    for call in fake_tg.calls:
        assert secret not in json.dumps(call.params)
    for request in fake_astria.requests:
        sent = json.dumps([request.query, request.form, request.json], default=str)
        assert secret not in sent and "/file/bot" not in sent
        assert all(secret.encode() not in content for _, _, content in request.files)


async def test_each_refused_photo_gets_its_reason(
    fake_tg: FakeTelegram, users: Users, tg_settings: Settings
) -> None:
    async with running_bot(tg_settings):
        good = [jpeg_bytes(1024, 1024, seed=seed) for seed in range(21)]
        for data in good[:20]:
            users.document(ALICE, data)
        users.document(ALICE, good[0], name="again.jpg")
        users.photo(ALICE, jpeg_bytes(1280, 800, seed=50))  # compressed: too small
        users.document(ALICE, b"%PDF-1.4 not a photo", name="cv.pdf", mime="application/pdf")
        users.document(ALICE, None, name="huge.tif", mime="image/tiff", size=25 * 1024 * 1024)
        users.document(ALICE, good[20], name="one-too-many.jpg")
        summary = await fake_tg.wait_for(sent_text(ALICE, "received"), within=20)

    text = summary.params["text"]
    assert text.startswith("25 photos received: 20 added (20 of 20 in your set)")
    for reason in ("1 too small", "1 not a readable image", "1 over 20 MB", "1 duplicate skipped",
                   "1 over the 20-photo limit"):  # fmt: skip
        assert reason in text
    assert len(fake_tg.find("getFile")) == 24  # the 25 MB file was never asked for


async def test_a_lone_refused_photo_is_explained_in_full(
    fake_tg: FakeTelegram, users: Users, tg_settings: Settings
) -> None:
    async with running_bot(tg_settings):
        users.photo(ALICE, jpeg_bytes(1280, 853, seed=7))
        summary = await fake_tg.wait_for(sent_text(ALICE, "px"))
    assert "1280×853 px" in summary.params["text"]
    assert "send it as a file" in summary.params["text"]


async def test_a_stop_while_photos_are_being_stored_waits_for_them(
    fake_tg: FakeTelegram,
    users: Users,
    tg_settings: Settings,
    fake_astria: FakeAstria,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A batch that has closed and is being checked and stored when the bot stops is finished
    before the store and the Bot API transport close: its photos are kept and its summary sent
    (it wrote to a closed database and its report found no transport)."""
    fake_astria.delay_next("POST", "/images/inspect", seconds=1.0)
    async with running_bot(tg_settings):
        users.document(ALICE, jpeg_bytes(1024, 1024, seed=3), name="me.jpg")
        for _ in range(200):  # the batch has closed: its photo is at the (slow) inspection
            if any(r.path == "/images/inspect" for r in fake_astria.requests):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the photo never reached the inspection")
    summary = fake_tg.find("editMessageText", ALICE)
    assert summary and "1 photo received: 1 added" in summary[-1].params["text"]
    assert "storing photos" not in caplog.text and "could not report" not in caplog.text
    async with running_bot(tg_settings) as core:
        user = await core.service.store.find_user("telegram", str(ALICE))
        assert user is not None and len(await core.service.store.pending_photos(user.id)) == 1


async def test_group_imagine_without_and_with_a_model_and_train_points_to_dm(
    fake_tg: FakeTelegram, users: Users, tg_settings: Settings
) -> None:
    async with running_bot(tg_settings):
        asked = users.message(BOB, GROUP, "/imagine a cat on a roof")
        answer = await fake_tg.wait_for(sent_text(GROUP, "no model yet"))
        assert replied_to(answer) == asked["message_id"]

        users.message(BOB, GROUP, "/train@photoshoot_test_bot man")
        pointer = await fake_tg.wait_for(sent_text(GROUP, "Training happens"))
        assert buttons(pointer.params) == {
            "Open a private chat with me": "https://t.me/photoshoot_test_bot?start=train"
        }

        await train_model(fake_tg, users, ALICE)
        asked = users.message(ALICE, GROUP, "/imagine@photoshoot_test_bot at the beach")
        album = await fake_tg.wait_for(method_in("sendMediaGroup", GROUP))
        assert replied_to(album) == asked["message_id"]
        assert album.params["media"][0]["caption"] == "at the beach"
        status = await fake_tg.wait_for(sent_text(GROUP, "Queued"))
        assert replied_to(status) == asked["message_id"]
    assert not fake_tg.find("sendMediaGroup", ALICE)  # the result went to the group only


async def test_buttons_work_after_a_restart_and_only_for_their_owner(
    fake_tg: FakeTelegram, users: Users, tg_settings: Settings, fake_astria: FakeAstria
) -> None:
    async with running_bot(tg_settings) as core:
        await train_model(fake_tg, users, ALICE)
        keyboard_call = await imagine(fake_tg, users, ALICE, GROUP)
        await core.tracker.wait_idle()  # delivered and recorded as such
    keyboard_message = keyboard_call.result
    labels = buttons(keyboard_message)
    [first_prompt] = fake_astria.prompts.values()

    async with running_bot(tg_settings):  # a new process: nothing of the first in memory
        prompts_before = len(fake_astria.prompts)
        query = users.press(MALLORY, keyboard_message, labels["🔁 Reroll"])
        refusal = await fake_tg.wait_for(
            lambda c: (
                c.method == "answerCallbackQuery" and c.params["callback_query_id"] == query["id"]
            )
        )
        assert refusal.params["show_alert"] == "true"
        assert "belong to" in refusal.params["text"]

        albums = len(fake_tg.find("sendMediaGroup", GROUP))
        users.press(ALICE, keyboard_message, labels["✨ #2"])
        await fake_tg.wait_for(lambda c: len(fake_tg.find("sendMediaGroup", GROUP)) > albums)
        assert len(fake_astria.prompts) == prompts_before + 1
        newest = max(fake_astria.prompts.values(), key=lambda prompt: prompt["id"])
        assert newest["seed"] == first_prompt["seed"] + 1
        assert newest["text"] == first_prompt["text"]

        users.press(ALICE, keyboard_message, labels["📁 Full size"])
        files = await fake_tg.wait_for(
            lambda c: c.method == "sendMediaGroup"
            and c.params["media"][0]["type"] == "document"
        )  # fmt: skip
        assert len(files.files) == 4
        assert replied_to(files) == keyboard_message["message_id"]


async def test_flood_control_429_is_waited_out_and_the_message_still_goes_out(
    fake_tg: FakeTelegram, users: Users, tg_settings: Settings
) -> None:
    async with running_bot(tg_settings):
        fake_tg.inject("sendMessage", 429, retry_after=1)
        users.message(ALICE, text="/help")
        sent = await fake_tg.wait_for(sent_text(ALICE, "photoshoots"))
    [refused] = [c for c in fake_tg.find("sendMessage", ALICE, ok_only=False) if c.status == 429]
    assert sent.at - refused.at >= 1.0
    assert sent.params["text"] == refused.params["text"]


async def test_a_chat_that_blocked_the_bot_is_given_up_not_retried_forever(
    fake_tg: FakeTelegram, users: Users, tg_settings: Settings, fake_astria: FakeAstria
) -> None:
    async with running_bot(tg_settings) as core:
        await train_model(fake_tg, users, ALICE)
        fake_tg.inject(
            "sendMediaGroup", 403, retry_after=None,
            description="Forbidden: bot was blocked by the user", times=100,
        )  # fmt: skip
        users.message(ALICE, text="/imagine astronaut on the moon")
        for _ in range(400):  # the album is refused, and the tracker closes the delivery
            refused = fake_tg.find("sendMediaGroup", ALICE, ok_only=False)
            if refused and not await core.store.undelivered():
                break
            await asyncio.sleep(0.05)
        assert await core.store.undelivered() == []
    attempts = len(fake_tg.find("sendMediaGroup", ALICE, ok_only=False))
    async with running_bot(tg_settings):  # a restart owes that chat nothing any more
        users.message(ALICE, text="/help")
        await fake_tg.wait_for(sent_text(ALICE, "photoshoots"))
    assert len(fake_tg.find("sendMediaGroup", ALICE, ok_only=False)) == attempts == 1


def help_update(update_id: int = 1) -> dict[str, Any]:
    """The update Telegram POSTs when Alice sends /help in her private chat."""
    return {"update_id": update_id, "message": {
        "message_id": 4 + update_id, "date": int(time.time()), "text": "/help",
        "chat": {"id": ALICE, "type": "private"}, "from": Users.user(ALICE),
        "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
    }}  # fmt: skip


def webhook_settings(
    fake_tg: FakeTelegram, make_settings: Callable[..., Settings], port: int
) -> Settings:
    return make_settings(
        telegram_bot_token=TOKEN,
        telegram_api_url=fake_tg.api_url,
        telegram_file_url=fake_tg.file_url,
        public_url="https://bot.example.org",
        callback_port=port,
    )


async def test_webhook_mode_when_public_url_is_set(
    fake_tg: FakeTelegram, make_settings: Callable[..., Settings]
) -> None:
    port = free_port()  # the webhook shares CALLBACK_PORT with the callbacks
    settings = webhook_settings(fake_tg, make_settings, port)
    update = help_update()
    async with running_bot(settings):
        assert fake_tg.webhook is not None
        assert fake_tg.webhook["url"] == f"https://bot.example.org{WEBHOOK_PATH}"
        url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
        async with httpx.AsyncClient() as client:
            forged = await client.post(url, json=update, headers={SECRET_HEADER: "guess"})
            assert forged.status_code == 403
            secret = fake_tg.webhook["secret_token"]
            accepted = await client.post(url, json=update, headers={SECRET_HEADER: secret})
            assert accepted.status_code == 200
        await fake_tg.wait_for(sent_text(ALICE, "photoshoots"))
    assert not fake_tg.find("getUpdates")


async def test_webhook_callbacks_and_healthz_answer_on_one_port(
    fake_tg: FakeTelegram, make_settings: Callable[..., Settings]
) -> None:
    """One public URL behind one proxy: Telegram's updates and the backend's callbacks both
    reach the bot on CALLBACK_PORT."""
    port = free_port()
    settings = webhook_settings(fake_tg, make_settings, port)
    async with running_bot(settings) as core, httpx.AsyncClient() as client:
        user = await core.store.get_or_create_user("telegram", str(ALICE))
        tune = await core.store.create_tune(
            user.id, title="t", class_name="man", token="ohwx", label=None, photo_ids=[]
        )
        base = f"http://127.0.0.1:{port}"
        assert fake_tg.webhook is not None
        update = await client.post(
            f"{base}{WEBHOOK_PATH}",
            json=help_update(),
            headers={SECRET_HEADER: fake_tg.webhook["secret_token"]},
        )
        callback = await client.post(
            f"{base}/callbacks/tune/{tune.id}/{tune.callback_secret}", json={"tune": {}}
        )
        health = await client.get(f"{base}/healthz")
        await fake_tg.wait_for(sent_text(ALICE, "photoshoots"))
    assert update.status_code == 200
    assert (callback.status_code, callback.json()) == (200, {"ok": True})
    assert health.status_code == 200


# -- languages ---------------------------------------------------------------------------------


async def test_a_russian_speaking_user_gets_russian_end_to_end(
    fake_tg: FakeTelegram, users: Users, tg_settings: Settings, fake_astria: FakeAstria
) -> None:
    """Telegram's `language_code` "ru": help, plural forms, a class word, the training's news
    (sent by the job tracker, outside any update), the prompt tip, buttons, command menus."""
    users.languages[ALICE] = "ru"
    async with running_bot(tg_settings):
        users.message(ALICE, text="/help")
        await fake_tg.wait_for(sent_text(ALICE, "Я делаю фотосессии с вами. Три шага"))
        for seed in range(2):
            users.document(ALICE, jpeg_bytes(1024, 1024, seed=seed), name=f"{seed}.jpg", album="a")
        await fake_tg.wait_for(sent_text(ALICE, "Получены 2 фотографии: добавлено: 2"))
        for seed in range(2, 7):
            users.document(ALICE, jpeg_bytes(1024, 1024, seed=seed), name=f"{seed}.jpg", album="b")
        await fake_tg.wait_for(sent_text(ALICE, "Получено 5 фотографий: добавлено: 5"))

        users.message(ALICE, text="/train мужчина")
        await fake_tg.wait_for(sent_text(ALICE, "Обучение man #1 началось"))
        await fake_tg.wait_for(sent_text(ALICE, "Ваша модель man #1 готова и активна"))
        [tune] = fake_astria.tunes.values()
        assert tune["name"] == "man"  # the class word SDXL knows

        users.message(ALICE, text="/imagine астронавт на луне")
        await fake_tg.wait_for(sent_text(ALICE, "лучше всего понимает английский"))
        hint = await fake_tg.wait_for(sent_text(ALICE, "Картинка #1: нажмите ✨ #n"))
        assert {"🔁 Заново", "📁 Оригиналы", "✨ #1"} <= set(buttons(hint.params))
        [prompt] = fake_astria.prompts.values()
        assert prompt["text"].endswith("ohwx man астронавт на луне")  # used as typed

    menus = {(scope, code) for scope, code in fake_tg.command_menus}
    codes = {"", "en", "de", "es", "pt", "ru"}
    assert menus == {(s, c) for s in ("all_private_chats", "all_group_chats") for c in codes}
    russian = {
        c["command"]: c["description"] for c in fake_tg.command_menus["all_private_chats", "ru"]
    }
    assert russian["language"] == "выбрать язык, на котором я с вами говорю"
    default = {
        c["command"]: c["description"] for c in fake_tg.command_menus["all_private_chats", ""]
    }
    assert default["language"] == "choose the language I speak with you"


async def test_language_switches_with_a_button_and_survives_a_restart(
    fake_tg: FakeTelegram, users: Users, tg_settings: Settings
) -> None:
    users.languages[BOB] = "ru"
    async with running_bot(tg_settings):
        users.message(BOB, text="/language")
        menu = await fake_tg.wait_for(
            sent_text(BOB, "Я говорю с вами на языке: Русский (язык вашего приложения)")
        )
        choices = buttons(menu.params)
        assert list(choices) == [
            "English", "Deutsch", "Español", "Português (Brasil)", "Русский",
            "Автоматически (язык приложения)",
        ]  # fmt: skip
        users.press(BOB, menu.result, choices["Deutsch"])
        await fake_tg.wait_for(sent_text(BOB, "Ab jetzt spreche ich Deutsch mit dir."))
        users.message(BOB, text="/status")
        await fake_tg.wait_for(sent_text(BOB, "Gerade läuft nichts."))

    async with running_bot(tg_settings):  # a new process; Bob's app still says "ru"
        users.message(BOB, text="/cancel")
        await fake_tg.wait_for(sent_text(BOB, "Nichts abzubrechen"))
        users.message(BOB, text="/language auto")
        await fake_tg.wait_for(sent_text(BOB, "Снова следую языку вашего приложения: Русский."))
        users.message(BOB, text="/status")
        await fake_tg.wait_for(sent_text(BOB, "Сейчас ничего не выполняется."))


async def test_an_app_language_we_lack_gets_the_default_language(
    fake_tg: FakeTelegram, users: Users, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        telegram_bot_token=TOKEN,
        telegram_api_url=fake_tg.api_url,
        telegram_file_url=fake_tg.file_url,
        default_language="es",
    )
    users.languages[ALICE], users.languages[BOB] = "fr", "de"
    async with running_bot(settings):
        users.message(ALICE, text="/status")
        users.message(BOB, text="/status")
        await fake_tg.wait_for(sent_text(ALICE, "No hay nada en marcha."))
        await fake_tg.wait_for(sent_text(BOB, "Gerade läuft nichts."))
    default = {c["command"]: c["description"] for c in fake_tg.command_menus["all_group_chats", ""]}
    assert default["status"] == "lo que está en marcha"


async def test_group_members_are_answered_in_their_language_and_not_recorded(
    fake_tg: FakeTelegram, users: Users, tg_settings: Settings
) -> None:
    """The language comes with each update; nobody is stored just for talking in a group."""
    users.languages[BOB] = "de"
    async with running_bot(tg_settings) as core:
        users.message(BOB, GROUP, "hallo zusammen")
        users.message(BOB, GROUP, "/help")
        await fake_tg.wait_for(sent_text(GROUP, "/imagine <Prompt> macht hier Bilder von dir"))
        assert await core.store.find_user("telegram", str(BOB)) is None
