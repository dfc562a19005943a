"""The gettext catalogs, compiled when first used: the `.po` files are the only thing kept.

Each language's `messages.po` is read with Babel and compiled in memory into a standard
`gettext.GNUTranslations` (the same bytes `pybabel compile` writes to a `.mo` file), once per
process. So there is no build step and no binary file in the repository, and a `.po` edited
by a translator is what the bot speaks after a restart. Entries marked fuzzy (guesses made by
`pybabel update`) are left out, as gettext does: the English shows until someone checks them.

Messages are looked up with the key as gettext's context (`msgctxt`) and the English as the
message id, so a reworded English sentence no longer finds its old translation (it became
fuzzy on the next update) instead of silently showing a translation of something else.
"""

from __future__ import annotations

import gettext
import io
from functools import cache
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from bot.core.texts.languages import DOMAIN, LOCALES_DIR, SOURCE_LANGUAGE


def po_path(code: str) -> Path:
    return LOCALES_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalog(code: str) -> Catalog:
    """A language's catalog as Babel reads it (tests check every entry of it)."""
    with po_path(code).open("rb") as source:
        return read_po(source, locale=code, domain=DOMAIN)


@cache
def translations(code: str) -> gettext.NullTranslations:
    """The compiled catalog of `code`; English (the source) translates nothing."""
    if code == SOURCE_LANGUAGE:
        return gettext.NullTranslations()
    compiled = io.BytesIO()
    write_mo(compiled, read_catalog(code), use_fuzzy=False)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)
