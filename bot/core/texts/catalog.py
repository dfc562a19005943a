"""The shape of a message catalog: a key maps to a sentence, or to its plural forms."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plural:
    """A message that counts something: `one` for a count of 1, `other` for the rest."""

    one: str
    other: str


Catalog = dict[str, str | Plural]
"""Keys are dotted names (`area.what`); values are `str.format` templates (`{name}` fields)."""
