"""Is a prompt written in English? A cheap guess, good enough for one tip.

SDXL's text encoders learned from English captions, so a prompt in another language comes out
vaguer. Prompts are still used exactly as typed (only the user knows what they meant); the
guess just decides whether to add a tip. No language-detection dependency: three signals that
are cheap and rarely wrong on prompt-sized text.

- Letters of another script (Cyrillic, Greek, CJK, Arabic ...) make up a good share of the
  letters.
- Common function words of other languages that English does not use ("und", "auf", "los",
  "para", "com", "avec" ...) outnumber English ones ("the", "with", "on" ...). Words shared
  with English ("a", "in", "do", "no", "as") count for neither.
- Letters such as ä, ß, ñ, ã or ç appear while no English function word does.

Names, styles and loanwords ("bokeh", "ohwx", "85mm") trip none of these.
"""

from __future__ import annotations

import re
import unicodedata

NON_LATIN_SHARE = 0.3
FOREIGN_WORDS = frozenset({
    # German
    "der", "das", "und", "mit", "auf", "dem", "den", "des", "ein", "eine", "einem", "einer",
    "im", "vom", "zum", "zur", "ist", "nicht", "wie", "bei", "unter", "vor", "hinter", "neben",
    # Spanish
    "el", "la", "los", "las", "una", "unos", "unas", "del", "al", "en", "con", "por", "para",
    "sobre", "y", "que", "es", "como", "muy", "su", "sus",
    # Portuguese
    "um", "uma", "os", "da", "dos", "na", "nas", "nos", "em", "com", "ao", "pela",
    "pelo", "muito", "é",
    # French and Italian
    "le", "les", "et", "du", "une", "avec", "dans", "sur", "est", "pour", "aux", "il", "gli",
    "di", "che", "della", "nel", "per",
    # Dutch
    "het", "een", "van", "met",
})  # fmt: skip
ENGLISH_WORDS = frozenset({
    "the", "of", "with", "and", "at", "by", "for", "to", "from", "is", "are", "wearing", "his",
    "her", "their", "under", "over", "into", "near", "behind", "while", "this", "that",
})  # fmt: skip
FOREIGN_LETTERS = re.compile(r"[äöüßñãõçœ¿¡]")
WORD = re.compile(r"[^\W\d_]+")


def looks_english(prompt: str) -> bool:
    """False when the prompt is most likely in another language (see the module docstring)."""
    words = WORD.findall(prompt.lower())
    letters = [char for word in words for char in word]
    if not letters:
        return True
    non_latin = sum(1 for char in letters if not _latin(char))
    if non_latin / len(letters) >= NON_LATIN_SHARE:
        return False
    foreign = sum(1 for word in words if word in FOREIGN_WORDS)
    english = sum(1 for word in words if word in ENGLISH_WORDS)
    if foreign > english:
        return False
    return not (english == 0 and any(FOREIGN_LETTERS.search(word) for word in words))


def _latin(char: str) -> bool:
    return unicodedata.name(char, "").startswith("LATIN")
