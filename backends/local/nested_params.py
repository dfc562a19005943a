"""Rails-style nested request parameters, as Astria's clients send them.

Forms and multipart bodies name nested values in the key: `tune[characteristics][eye_color]`,
`tune[tune_ids][]`, `tune[prompt_attributes][callback]`, `tune[prompts_attributes][0][text]`
and, in newer docs, `tune[prompts_attributes][][text]` (a new element starts when a key
repeats, as Rails does). JSON bodies are nested already: `{"tune": {...}}`, root key optional.
Either way the result is one tree of dicts and lists; a dict whose keys are all digits (indexed
form keys) becomes a list in index order. File parts stay UploadFiles inside the tree.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from backends.local.errors import HTTPError, RequestError
from backends.local.http import read_json_object

SEGMENT = re.compile(r"\[([^\[\]]*)\]")


async def read_nested(
    request: Request, root: str, *, max_files: int, max_part_size: int
) -> dict[str, Any]:
    """The body's parameters under `root` (`tune`), as a tree; RequestError when unreadable."""
    if request.headers.get("content-type", "").startswith("application/json"):
        return await read_json_object(request, root)
    try:
        form = await request.form(
            max_files=max_files, max_fields=max_files + 200, max_part_size=max_part_size
        )
    except HTTPError:  # over the request size limit
        raise
    except Exception as exc:  # malformed multipart
        raise RequestError(f"cannot read the form: {exc}") from None
    return nest(form.multi_items(), root)


def nest(items: list[tuple[str, str | UploadFile]], root: str) -> dict[str, Any]:
    """`[("tune[a][b]", "1"), ("tune[c][]", "x")]` -> `{"a": {"b": "1"}, "c": ["x"]}`."""
    tree: dict[str, Any] = {}
    for key, value in items:
        if not key.startswith(f"{root}["):
            continue
        path = SEGMENT.findall(key[len(root) :])
        if "".join(f"[{p}]" for p in path) != key[len(root) :] or not path or not path[0]:
            raise RequestError(f"malformed field name {key!r}")
        _insert(tree, path, value)
    return _lists(tree)


def _insert(node: dict[str, Any], path: list[str], value: Any) -> None:
    head, rest = path[0], path[1:]
    if not rest:
        node[head] = value
        return
    if rest[0] != "":  # a nested hash (or an indexed list, turned into a list later)
        child = node.setdefault(head, {})
        if not isinstance(child, dict):
            raise RequestError(f"field {head!r} is both a value and a group")
        _insert(child, rest, value)
        return
    items = node.setdefault(head, [])
    if not isinstance(items, list):
        raise RequestError(f"field {head!r} is both a list and something else")
    if len(rest) == 1:  # `key[]`: a list of values
        items.append(value)
        return
    inner = rest[1:]  # `key[][name]`: a list of hashes; a repeated name starts the next one
    if not items or not isinstance(items[-1], dict) or _has(items[-1], inner):
        items.append({})
    _insert(items[-1], inner, value)


def _has(node: Any, path: list[str]) -> bool:
    """Whether `path` already holds a value in `node` (a list segment never conflicts)."""
    for segment in path:
        if segment == "" or not isinstance(node, dict) or segment not in node:
            return False
        node = node[segment]
    return True


def _lists(value: Any) -> Any:
    if isinstance(value, list):
        return [_lists(v) for v in value]
    if not isinstance(value, dict):
        return value
    converted = {k: _lists(v) for k, v in value.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted
