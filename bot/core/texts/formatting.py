"""Filling a template in, with numbers and times written the reader's way (Babel).

Templates are `str.format` templates; three format specs write a value for the language of
the moment instead of Python's fixed English way:

- `{eta:time}` a datetime as the locale's short time (`2:05 PM` in English, `14:05` in
  German), in UTC (the bot does not know the reader's time zone, so the text says "UTC");
  `{when:date}` the locale's medium date, `{when:datetime}` both;
- `{amount:n}` a number with the locale's separators (`12,345.5`, `12 345,5`, `12.345,5`);
  `{megabytes:.1n}` the same with exactly one decimal; `{change:+n}` a whole number with its
  sign (`+50`, `-1,250`);
- `{progress:%}` a fraction as a percentage (`42%`, `42 %`).

Anything else is formatted as `str.format` would: ids, seeds and `<lora:ID:0.8>` tags stay
plain digits, since people copy them.
"""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime
from typing import Any

from babel.dates import format_date, format_datetime, format_time
from babel.numbers import format_decimal, format_percent

from bot.core.texts.languages import babel_locale

_DECIMALS = re.compile(r"\.(\d)n")


class LocaleFormatter(string.Formatter):
    """`str.format` plus the specs of the module docstring, for one language."""

    def __init__(self, language: str) -> None:
        self._locale = babel_locale(language)

    def format_field(self, value: Any, format_spec: str) -> Any:
        locale = self._locale
        if isinstance(value, datetime) and format_spec in ("time", "date", "datetime"):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
            if format_spec == "time":
                return format_time(moment, "short", tzinfo=UTC, locale=locale)
            if format_spec == "date":
                return format_date(moment.astimezone(UTC), "medium", locale=locale)
            return format_datetime(moment, "medium", tzinfo=UTC, locale=locale)
        if isinstance(value, int | float) and not isinstance(value, bool):
            if format_spec == "n":
                return format_decimal(value, locale=locale)
            if format_spec == "+n":
                return format_decimal(value, format="+#,##0;-#,##0", locale=locale)
            if format_spec == "%":
                return format_percent(value, locale=locale)
            if decimals := _DECIMALS.fullmatch(format_spec):
                places = int(decimals[1])
                pattern = "#,##0" + ("." + "0" * places if places else "")
                return format_decimal(value, format=pattern, locale=locale)
        return super().format_field(value, format_spec)


def fill(template: str, language: str, args: dict[str, Any]) -> str:
    """`template` with `args` filled in; a missing field raises KeyError, as str.format does."""
    return LocaleFormatter(language).vformat(template, (), args)
