"""The gettext catalogs are complete and safe: every English message is translated in every
language (not fuzzy, not for an older English), with the same placeholders, plural forms that
compile and cover every count, command names the platforms accept, and a `.pot` template in
step with english.py.

When one of these fails after you added or reworded a message, run the two commands of the
README's "Languages" section (extract, update), translate what they left empty or fuzzy in
each `bot/locales/<code>/LC_MESSAGES/messages.po`, and run the tests again.
"""

from __future__ import annotations

import gettext
import io
import re
import string
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from bot.core.texts import Plural, text
from bot.core.texts.catalogs import read_catalog
from bot.core.texts.english import MESSAGES
from bot.core.texts.extract import extract_messages
from bot.core.texts.languages import LOCALES_DIR, SOURCE_LANGUAGE, languages, use_language

ROOT = Path(__file__).resolve().parents[1]
TRANSLATED = [code for code in languages() if code != SOURCE_LANGUAGE]
UPDATE_HINT = "run the README's extract and update commands, then translate"
DISCORD_NAME = re.compile(r"[-_'\w]{1,32}")
PLACEHOLDER = re.compile(r"{[a-z_]+(:[^{}]*)?}")


def english_forms(key: str) -> tuple[str, ...]:
    entry = MESSAGES[key]
    return (entry.one, entry.other) if isinstance(entry, Plural) else (entry,)


def translated_forms(message: Message) -> tuple[str, ...]:
    return message.string if isinstance(message.string, tuple) else (message.string,)


def entries(catalog: Catalog) -> Iterator[Message]:
    return (message for message in catalog if message.id)


def fields(template: str) -> set[tuple[str, str]]:
    """(name, format spec) of every `{field}` of a template."""
    return {
        (name, spec or "")
        for _, name, spec, _ in string.Formatter().parse(template)
        if name is not None
    }


def test_the_languages_of_the_contract_have_catalogs() -> None:
    assert {"ru", "es", "de", "pt_BR"} <= set(TRANSLATED)
    assert languages()[0] == SOURCE_LANGUAGE == "en"
    for code in TRANSLATED:
        assert (LOCALES_DIR / code / "LC_MESSAGES" / "messages.po").is_file()


def catalog_problems(catalog: Catalog) -> dict[str, list[str]]:
    """What a catalog lacks or gets wrong, by kind, as lists of keys."""
    by_key = {message.context: message for message in entries(catalog)}
    return {
        "missing": sorted(set(MESSAGES) - set(by_key)),
        "no longer in english.py": sorted(set(by_key) - set(MESSAGES)),
        "for an older English": sorted(
            key
            for key, message in by_key.items()
            if key in MESSAGES
            and (message.id if isinstance(message.id, tuple) else (message.id,))
            != english_forms(key)
        ),
        "fuzzy": sorted(key for key, message in by_key.items() if message.fuzzy),
        "untranslated": sorted(
            key for key, message in by_key.items() if not all(translated_forms(message))
        ),
    }


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_message_is_translated(code: str) -> None:
    problems = {kind: keys for kind, keys in catalog_problems(read_catalog(code)).items() if keys}
    assert problems == {}, f"{code}: {UPDATE_HINT}"


def test_the_completeness_check_names_what_is_wrong() -> None:
    """It cannot pass by seeing nothing: a deleted, a guessed and an emptied entry show."""
    catalog = read_catalog("de")
    catalog.delete(MESSAGES["help"], context="help")
    guessed = catalog.get(MESSAGES["status.idle"], context="status.idle")
    emptied = catalog.get(MESSAGES["tune.done"], context="tune.done")
    assert guessed is not None and emptied is not None
    guessed.flags.add("fuzzy")
    emptied.string = ""
    assert catalog_problems(catalog) == {
        "missing": ["help"],
        "no longer in english.py": [],
        "for an older English": [],
        "fuzzy": ["status.idle"],
        "untranslated": ["tune.done"],
    }


@pytest.mark.parametrize("code", TRANSLATED)
def test_translations_keep_the_placeholders(code: str) -> None:
    """Each form uses only the English fields (anything else is a KeyError in a chat), and
    together the forms use them all (nothing the user needs is left out)."""
    wrong = []
    for message in entries(read_catalog(code)):
        english = set().union(*map(fields, english_forms(message.context)))
        forms = [fields(form) for form in translated_forms(message)]
        if any(not form <= english for form in forms) or set().union(*forms) != english:
            wrong.append(message.context)
    assert wrong == []


@pytest.mark.parametrize("code", TRANSLATED)
def test_plural_forms_compile_and_every_plural_has_them_all(code: str) -> None:
    catalog = read_catalog(code)
    expression = catalog.plural_expr
    plural = gettext.c2py(expression)  # raises if the header's formula does not compile
    counts = [*range(1001), 1_000_000, 2_000_000]  # CLDR's Spanish has a form for millions
    assert {plural(n) for n in counts} == set(range(catalog.num_plurals))
    for message in entries(catalog):
        if isinstance(message.id, tuple):
            assert len(message.string) == catalog.num_plurals, message.context


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (1, "Получена 1 фотография"),
        (2, "Получены 2 фотографии"),
        (5, "Получено 5 фотографий"),
        (21, "Получена 21 фотография"),
        (14, "Получено 14 фотографий"),
    ],
)
def test_russian_counts_photos_with_its_three_forms(count: int, expected: str) -> None:
    with use_language("ru"):
        summary = text("photos.summary", count=count, parts="…", next_step="")
    assert summary.startswith(expected)


def sample_arguments(key: str) -> dict[str, object]:
    """Values of the right kind for every field of a message (times for `:time` ...)."""
    values: dict[str, object] = {}
    for form in english_forms(key):
        for name, spec in fields(form):
            if spec in ("time", "date", "datetime"):
                values[name] = datetime(2026, 11, 30, 14, 5, tzinfo=UTC)
            elif spec:
                values[name] = 1.5
            else:
                values[name] = f"<{name}>"
    values.pop("count", None)
    return values


@pytest.mark.parametrize("code", languages())
def test_every_message_fills_in_every_language(code: str) -> None:
    with use_language(code):
        for key in MESSAGES:
            for count in (1, 3) if isinstance(MESSAGES[key], Plural) else (None,):
                filled = text(key, count=count, **sample_arguments(key))
                assert filled.strip() and not PLACEHOLDER.search(filled), key


@pytest.mark.parametrize("code", languages())
def test_command_names_and_descriptions_fit_the_platforms(code: str) -> None:
    """Discord: names of 1-32 lower-case characters, unique; descriptions up to 100.
    Telegram: menu descriptions up to 256 characters."""
    with use_language(code):
        names = [text(key) for key in MESSAGES if key.startswith("discord.name.")]
        options = [text(key) for key in MESSAGES if key.startswith("discord.option.")]
        descriptions = [text(key) for key in MESSAGES if key.startswith("discord.command.")]
        menus = [text(key) for key in MESSAGES if key.startswith("command.")]
    for name in names + options:
        assert DISCORD_NAME.fullmatch(name) and name == name.lower(), name
    assert len(set(names)) == len(names)
    assert all(1 <= len(description) <= 100 for description in descriptions)
    assert all(1 <= len(description) <= 256 for description in menus)


def in_the_bot(folder: str) -> bool:
    """Where babel.cfg's patterns can match (walking .venv and data would only be slow)."""
    return Path(folder).resolve().is_relative_to(ROOT / "bot")


def test_the_template_is_in_step_with_the_english() -> None:
    """`bot/locales/messages.pot` holds exactly what `pybabel extract -F babel.cfg` finds now,
    and that is every message `text()` knows."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    extracted = {
        (context, msgid)
        for _, _, msgid, _, context in extract_from_dir(
            str(ROOT), method_map, options_map, directory_filter=in_the_bot
        )
    }
    with (LOCALES_DIR / "messages.pot").open("rb") as template:
        pot = {(m.context, m.id) for m in entries(read_po(template))}
    assert extracted == pot, UPDATE_HINT
    assert {context for context, _ in extracted} == set(MESSAGES)


def test_the_extractor_reads_every_form_of_entry() -> None:
    source = b"""
MESSAGES: Catalog = {
    "a.plain": "One sentence.",
    "a.joined": (
        "Two parts, "
        "one sentence."
    ),
    "a.keywords": Plural(one="{count} photo", other="{count} photos"),
    "a.positional": Plural("{count} model", "{count} models"),
}
OTHER = {"not.extracted": "Not a catalog."}
"""
    found = [entry[1:3] for entry in extract_messages(io.BytesIO(source), {}, (), {})]
    assert found == [
        ("pgettext", ("a.plain", "One sentence.")),
        ("pgettext", ("a.joined", "Two parts, one sentence.")),
        ("npgettext", ("a.keywords", "{count} photo", "{count} photos")),
        ("npgettext", ("a.positional", "{count} model", "{count} models")),
    ]
    with pytest.raises(ValueError, match="spell every key out"):
        list(extract_messages(io.BytesIO(b"MESSAGES = {**OTHER}"), {}, (), {}))
