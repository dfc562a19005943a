"""Languages below the chat platforms: which language a user gets, how it is stored and
switched, how numbers and times are written, and the tip for prompts not in English."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.app import running_core
from bot.config import ConfigError, Settings
from bot.core.errors import UserError
from bot.core.prompt_language import looks_english
from bot.core.prompts import TuneRef, compose_prompt
from bot.core.store import Store
from bot.core.texts import text
from bot.core.texts.languages import current_language, match, pick, use_language
from bot.doctor import configuration
from tests.conftest import chat, write_photos

TUNE = TuneRef(backend_id=7, token="ohwx", class_name="man")


@pytest.mark.parametrize(
    ("tag", "language"),
    [
        ("ru", "ru"),
        ("ru-RU", "ru"),
        ("de", "de"),
        ("es-419", "es"),  # Discord's Latin American Spanish
        ("es-ES", "es"),
        ("pt-br", "pt_BR"),  # Telegram's tags are lower case
        ("pt-BR", "pt_BR"),
        ("pt", "pt_BR"),  # the only Portuguese we speak
        ("en-GB", "en"),
        ("de_DE.UTF-8", "de"),  # a terminal's LANG
        ("fr", None),
        ("C.UTF-8", None),
        ("", None),
        (None, None),
    ],
)
def test_platform_tags_map_to_the_languages_we_speak(tag: str | None, language: str) -> None:
    assert match(tag) == language


def test_the_choice_wins_then_the_platform_then_the_default() -> None:
    assert pick("de", "ru", "es") == "de"
    assert pick(None, "ru", "es") == "ru"
    assert pick(None, "fr", "es") == "es"  # unknown languages fall back to DEFAULT_LANGUAGE
    assert pick(None, None, "es") == "es"


def test_times_percentages_and_decimals_are_written_the_readers_way() -> None:
    eta = datetime(2026, 11, 30, 14, 5, tzinfo=UTC)
    with use_language("en"):
        # CLDR's spaces: narrow no-break before AM/PM, no-break before % in German
        assert text("status.training_until", model="m", eta=eta).endswith(
            "2:05\N{NARROW NO-BREAK SPACE}PM UTC."
        )
        assert text("generation.progress", progress=0.42) == "Generating… 42%"
        assert text("prompt.strength_clamped", strength=2.5, used=2) == (
            "Model strength 2.5 is outside 0–2; used 2."
        )
    with use_language("de"):
        assert "um 14:05 UTC" in text("status.training_until", model="m", eta=eta)
        assert text("generation.progress", progress=0.42) == "Wird erzeugt… 42\N{NO-BREAK SPACE}%"
        assert "Modellstärke 2,5" in text("prompt.strength_clamped", strength=2.5, used=2)
    with use_language("ru"):
        assert text("telegram.megabytes", megabytes=23.6) == "24 МБ"


def test_ids_and_tags_stay_plain_digits_in_every_language() -> None:
    with use_language("ru"):
        line = text("models.line", id=12345, model="man #12345", state="x")
        lora = text("models.lora", backend_id=1234567)
    assert line.startswith("#12345 ") and lora == ", <lora:1234567:0.8>"


def test_the_language_is_per_task_and_restored_after_a_block() -> None:
    assert current_language() == "en"
    with use_language("ru"):
        assert current_language() == "ru"
        with use_language("de"):
            assert current_language() == "de"
        assert current_language() == "ru"
    assert current_language() == "en"


@pytest.mark.parametrize(
    "prompt",
    [
        "astronaut on the moon",
        "portrait of a man with a red scarf, 85mm, bokeh",
        "man in la jolla at the beach",  # a Spanish place name in English
        "cyberpunk samurai",
        "café scene at the corner of the street",
        "",
    ],
)
def test_english_prompts_get_no_tip(prompt: str) -> None:
    assert looks_english(prompt)


@pytest.mark.parametrize(
    "prompt",
    [
        "астронавт на луне",
        "宇航员在月球上",
        "astronauta en la luna",
        "Astronaut auf dem Mond",
        "astronauta na lua com um cachorro",
        "schöner Mann am Strand",
        "un homme avec un chapeau dans la rue",
    ],
)
def test_prompts_in_other_languages_are_recognised(prompt: str) -> None:
    assert not looks_english(prompt)


def test_a_prompt_not_in_english_is_used_as_typed_with_a_tip_in_the_users_language() -> None:
    with use_language("ru"):
        composed = compose_prompt("астронавт на луне", active=TUNE, owned={7: TUNE})
    assert composed.text == "<lora:7:0.8> ohwx man астронавт на луне"
    assert composed.notes == (text_in("ru", "prompt.not_english"),)
    english = compose_prompt("astronaut on the moon", active=TUNE, owned={7: TUNE})
    assert english.notes == ()


def text_in(language: str, key: str, **args: object) -> str:
    with use_language(language):
        return text(key, **args)


async def test_choice_and_platform_language_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "photoshoot.sqlite3"
    store = await Store.open(path, tmp_path)
    try:
        user = await store.get_or_create_user("telegram", "42", "Ann", "ru")
        await store.set_language(user.id, "de")
        again = await store.get_or_create_user("telegram", "42", "Ann")  # no tag this time
        assert (again.language, again.platform_language) == ("de", "ru")
        moved = await store.get_or_create_user("telegram", "42", "Ann", "es-419")
        assert moved.platform_language == "es-419"  # the app's language changed: kept
    finally:
        await store.close()
    store = await Store.open(path, tmp_path)
    try:
        user = await store.get_or_create_user("telegram", "42")
        assert (user.language, user.platform_language) == ("de", "es-419")
        await store.set_language(user.id, None)
        assert (await store.get_or_create_user("telegram", "42")).language is None
    finally:
        await store.close()


async def test_language_command_in_the_console(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The terminal's LANG is the console's platform language; /language overrides it, and
    the choice is kept for the next run; a language the bot doesn't speak loses nothing."""
    monkeypatch.setenv("LANG", "es_ES.UTF-8")
    settings = make_settings()
    output = await chat(settings, "/status\n/language klingon\n/language de\n/status\n")
    assert "No hay nada en marcha." in output
    assert "No hablo «klingon». Hablo: English, Deutsch, Español" in output
    assert "Ab jetzt spreche ich Deutsch mit dir." in output
    assert output.rstrip().endswith("Gerade läuft nichts.")

    output = await chat(settings, "/status\n/language\n/language auto\n/status\n")
    assert output.count("Gerade läuft nichts.") == 1
    assert "Ich spreche Deutsch mit dir (deine Wahl)." in output
    assert "Vuelvo a seguir el idioma de tu app: Español." in output
    assert output.rstrip().endswith("No hay nada en marcha.")


async def test_class_words_in_the_users_language_train_the_english_class(
    make_settings: Callable[..., Settings], tmp_path: Path, fake_astria: object
) -> None:
    photos = write_photos(tmp_path / "me", 4)
    output = await chat(
        make_settings(default_language="ru"), f"/photos {photos}\n/train мужчина\n/wait\n"
    )
    assert "Обучение man #1 началось" in output
    assert "Ваша модель man #1 готова" in output


async def test_default_language_speaks_to_those_whose_language_we_lack(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANG", "fr_FR.UTF-8")
    output = await chat(make_settings(default_language="pt-BR"), "/status\n")
    assert "Nada está rodando." in output


async def test_a_default_language_we_lack_stops_the_start(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(ConfigError, match="DEFAULT_LANGUAGE: 'fr' is not a language"):
        async with running_core(make_settings(default_language="fr")):
            pass


async def test_an_unknown_choice_is_refused_and_changes_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    async with running_core(make_settings()) as core:
        service = core.service
        user = await service.user("telegram", "7", "Ann", "ru")
        with pytest.raises(UserError, match="Я не говорю на «xx»"), use_language("ru"):
            await service.choose_language(user, "xx")
        stored = await service.user("telegram", "7")
        assert stored.language is None and service.language(stored) == "ru"
        assert await service.choose_language(stored, "Português (Brasil)") == (
            "A partir de agora falo com você em Português (Brasil)."
        )


def test_doctor_names_a_default_language_we_lack(make_settings: Callable[..., Settings]) -> None:
    check = configuration(make_settings(default_language="fr"))
    assert check.problem is not None and check.problem.startswith("DEFAULT_LANGUAGE: 'fr'")
    assert "default language pt_BR" in configuration(make_settings(default_language="pt-BR")).detail
