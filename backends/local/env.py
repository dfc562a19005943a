"""The one way the worker reads its environment: typed, checked, each refusal naming the variable.

`WorkerConfig.from_env` reads every worker variable through one `EnvReader` at start, handing
it to `Accel.from_env` (the speed levers) and `TrainingDefaults.from_env` (the trainer's knobs).
A bad value (`WORKER_TRAIN_STEPS=abc`) therefore stops the worker, or the bot that runs it,
before it serves anything, with one line naming the variable, instead of failing a job later.

Empty counts as unset (`VAR=` in a `.env` file or compose), and values are stripped.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from backends.local.errors import ConfigError

N = TypeVar("N", int, float)


class EnvReader:
    """Typed look-ups in an environment (`os.environ` unless given); raise ConfigError."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if environ is None else environ

    def text(self, name: str, default: str = "") -> str:
        return (self._env.get(name) or "").strip() or default

    def optional(self, name: str) -> str | None:
        return self.text(name) or None

    def path(self, name: str) -> Path | None:
        value = self.text(name)
        return Path(value).expanduser() if value else None

    def url(self, name: str) -> str | None:
        value = self.text(name)
        if value and not value.startswith(("http://", "https://")):
            raise ConfigError(f"{name}={value!r}: use an http:// or https:// URL")
        return value or None

    def integer(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        return self._numeric(name, int, "a whole number", default, minimum, maximum)

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        return self._numeric(name, float, "a number", default, minimum, maximum)

    def _numeric(
        self,
        name: str,
        convert: Callable[[str], N],
        what: str,
        default: N,
        minimum: N | None,
        maximum: N | None,
    ) -> N:
        value = self.text(name)
        if not value:
            return default
        try:
            number = convert(value)
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not {what}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{name}={value!r} is not {what}")
        _check_range(name, number, minimum, maximum)
        return number

    def choice(self, name: str, spellings: Mapping[str, str], default: str) -> str:
        """The meaning of the value's spelling (case-insensitive); `spellings` maps each
        accepted spelling to what it means, e.g. {"1": "on", "true": "on", ...}."""
        return pick(name, self.text(name), spellings, default)


def pick(name: str, value: str, spellings: Mapping[str, str], default: str) -> str:
    """`spellings[value]` (lower-cased; empty gives `default`), or a ConfigError listing them."""
    value = value.strip().lower()
    if not value:
        return default
    if value not in spellings:
        raise ConfigError(f"{name}={value!r}: use one of {', '.join(spellings)}")
    return spellings[value]


def _check_range(name: str, number: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and maximum is not None and not minimum <= number <= maximum:
        raise ConfigError(f"{name}={number}: must be between {minimum} and {maximum}")
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name}={number}: must be at least {minimum}")
    if maximum is not None and number > maximum:
        raise ConfigError(f"{name}={number}: must be at most {maximum}")
