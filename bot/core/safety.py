"""Prompt safety: the operator's block list, checked before anything is held or sent.

A prompt (or a pack template) that matches a rule is refused with one neutral sentence
(`safety.blocked`): it names no rule, so the list cannot be probed word by word, and the log
records only that a rule matched, never the prompt. The check runs in the service before a
generation row is written, so a refused prompt holds nothing and reaches no backend.

The rules come from PROMPT_BLOCKLIST (a text file) or, when unset, the packaged
`blocklist.txt`, whose header describes the format: `&` joins groups that must all match,
`|` separates alternatives, `*` ends a word prefix, `re:` starts a regular expression.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from bot.core.errors import UserError
from bot.core.texts import text

log = logging.getLogger(__name__)

DEFAULT_BLOCKLIST = Path(__file__).with_name("blocklist.txt")
"""Sexual content involving minors, sexual violence and abuse; see the file."""


class PromptBlocked(UserError):
    """The prompt matches the block list; the message is neutral on purpose."""

    def __init__(self) -> None:
        super().__init__(text("safety.blocked"))


class BlockListError(ValueError):
    """The block list file cannot be read or holds a malformed rule (named with its line)."""


@dataclass(frozen=True)
class Rule:
    """Every pattern must occur in the prompt (an `&` rule), or the one regular expression."""

    patterns: tuple[re.Pattern[str], ...]
    line: int

    def matches(self, prompt: str) -> bool:
        return all(pattern.search(prompt) for pattern in self.patterns)


@dataclass(frozen=True)
class BlockList:
    """The parsed rules; `check` raises PromptBlocked on the first match."""

    rules: tuple[Rule, ...]

    @classmethod
    def load(cls, path: Path | None = None) -> BlockList:
        """The rules of `path` (None: the packaged default)."""
        path = path or DEFAULT_BLOCKLIST
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BlockListError(f"cannot read the block list {path}: {exc}") from None
        return cls.parse(content, str(path))

    @classmethod
    def parse(cls, content: str, source: str = "block list") -> BlockList:
        rules = []
        for number, raw in enumerate(content.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                rules.append(Rule(_patterns(line), number))
            except re.error as exc:
                raise BlockListError(f"{source}, line {number}: {exc}") from None
        return cls(tuple(rules))

    def first_match(self, prompt: str) -> Rule | None:
        folded = " ".join(prompt.casefold().split())
        return next((rule for rule in self.rules if rule.matches(folded)), None)

    def check(self, prompt: str) -> None:
        """Raise PromptBlocked when a rule matches `prompt`."""
        rule = self.first_match(prompt)
        if rule is not None:
            log.info("a prompt was refused by block-list rule on line %d", rule.line)
            raise PromptBlocked


def _patterns(line: str) -> tuple[re.Pattern[str], ...]:
    if line.startswith("re:"):
        return (re.compile(line[3:].strip(), re.IGNORECASE),)
    groups = [group.strip() for group in line.split("&")]
    if not all(groups):
        raise re.error("an empty group around `&`")
    return tuple(_group(group) for group in groups)


def _group(group: str) -> re.Pattern[str]:
    words = [word.strip().casefold() for word in group.split("|") if word.strip()]
    if not words:
        raise re.error("an empty group")
    alternatives = [
        re.escape(word[:-1]) + r"\w*" if word.endswith("*") else re.escape(word) for word in words
    ]
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)
