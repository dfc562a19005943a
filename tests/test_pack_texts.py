"""The shipped packs' titles and descriptions in the reader's language (issue 17): the catalog
keys match the worker's pack files, and only the backend's exact English is translated."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from backends.base import Pack
from bot.core.shoots import pack_words
from bot.core.texts import languages
from bot.core.texts.packs import MESSAGES

SHIPPED = Path(__file__).resolve().parents[1] / "backends" / "local" / "packs" / "shipped"


def test_the_catalog_has_every_shipped_packs_words_exactly() -> None:
    expected = {}
    for path in sorted(SHIPPED.glob("*.toml")):
        pack = tomllib.loads(path.read_text())
        expected[f"pack.{pack['slug']}.title"] = pack["title"]
        expected[f"pack.{pack['slug']}.description"] = pack["description"]
    assert len(expected) >= 16
    assert expected == MESSAGES


@pytest.mark.parametrize(
    ("language", "title"),
    [("ru", "Путешествия"), ("de", "Reisen"), ("es", "Viajes"), ("pt_BR", "Viagens")],
)
def test_a_shipped_pack_speaks_the_readers_language_others_keep_their_words(
    language: str, title: str
) -> None:
    shipped = Pack(1, "travel", "Travel", MESSAGES["pack.travel.description"])
    edited = Pack(2, "travel", "Travel 2026", "Our own words.")
    foreign = Pack(3, "bridal", "Bridal", "Astria's gallery pack.")
    with languages.use_language(language):
        assert pack_words(shipped, "title") == title
        assert pack_words(shipped, "description") != shipped.description
        assert pack_words(edited, "title") == "Travel 2026"
        assert pack_words(edited, "description") == "Our own words."
        assert pack_words(foreign, "title") == "Bridal"
    with languages.use_language("en"):
        assert pack_words(shipped, "title") == "Travel"
