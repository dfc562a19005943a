"""Route parameters both HTTP servers share (the worker's API, the bot's callback server).

`{name:id}` matches a row id SQLite can hold: 1 to 18 digits, so anything longer is no route
(404) instead of an OverflowError deep in the database driver (a 500). Importing this module
registers the convertor with Starlette.
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor

MAX_ID = 2**63 - 1
"""SQLite's largest INTEGER: no id, offset or count from a client may exceed it."""


class IdConvertor(Convertor[int]):
    """A non-negative integer below 10**18 < MAX_ID."""

    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(int(value))


register_url_convertor("id", IdConvertor())
