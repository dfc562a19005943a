"""Babel's extractor for our message catalogs: `pybabel extract -F babel.cfg` calls it.

It reads a module's `MESSAGES = {key: "English", key: Plural(one=..., other=...)}` with `ast`
(nothing is imported) and hands Babel one `pgettext(key, English)` per sentence and one
`npgettext(key, one, other)` per plural, so every key becomes a `msgctxt` and the English its
`msgid` in `bot/locales/messages.pot`. Every module of `bot/core/texts/` holding such a dict
is extracted (babel.cfg), so words kept apart (pack titles and descriptions, say) need no new
tooling: a `MESSAGES` dict in their own module, merged into `english.MESSAGES` (which is what
`text()` reads).
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator, Mapping
from typing import IO, Any

Extracted = tuple[int, str, tuple[str, ...], list[str]]
CATALOG_NAME = "MESSAGES"


def extract_messages(
    fileobj: IO[bytes],
    keywords: Mapping[str, Any],
    comment_tags: Collection[str],
    options: Mapping[str, Any],
) -> Iterator[Extracted]:
    """Babel's extraction-method interface: (line, function, messages, comments) per entry."""
    tree = ast.parse(fileobj.read())
    for node in tree.body:
        value = _catalog_value(node)
        if not isinstance(value, ast.Dict):
            continue
        for key_node, entry in zip(value.keys, value.values, strict=True):
            if key_node is None:
                raise ValueError(f"line {value.lineno}: spell every key out (no ** in MESSAGES)")
            key = ast.literal_eval(key_node)
            yield _entry(key, entry)


def _catalog_value(node: ast.stmt) -> ast.expr | None:
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.value if node.target.id == CATALOG_NAME else None
    if isinstance(node, ast.Assign) and any(
        isinstance(target, ast.Name) and target.id == CATALOG_NAME for target in node.targets
    ):
        return node.value
    return None


def _entry(key: str, entry: ast.expr) -> Extracted:
    if isinstance(entry, ast.Call) and getattr(entry.func, "id", None) == "Plural":
        forms = dict(zip(("one", "other"), map(ast.literal_eval, entry.args), strict=False))
        forms |= {keyword.arg: ast.literal_eval(keyword.value) for keyword in entry.keywords}
        one, other = forms["one"], forms["other"]
        return entry.lineno, "npgettext", (key, one, other), []
    return entry.lineno, "pgettext", (key, ast.literal_eval(entry)), []
