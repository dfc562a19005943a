"""Logging set-up: one line per event, with secrets redacted wherever they slip in.

Telegram file URLs and Bot API URLs contain the bot token, and HTTP libraries log URLs,
so a filter scrubs token-shaped strings and bearer keys from every record; the configured
secrets themselves (`add_secrets`) are scrubbed whatever their shape, tracebacks included.

Events about a job carry context for operators to grep or query:
`log.info("...", extra=job_context("tune", 5, user=3))` adds `[job=tune:5 user=3]` to the
text line, or `"job"` and `"user"` keys to the JSON line (`--log-format json`: one JSON
object per line, tracebacks inside it, for log collectors).
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

_SECRET_PATTERNS = (
    re.compile(r"(bot)\d{5,}:[A-Za-z0-9_-]{20,}"),  # Telegram token inside URLs
    # 8+ characters: "auth bearer key" is prose; configured keys of any length: add_secrets.
    re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE),
    re.compile(r"(Bot\s+)[A-Za-z0-9._-]{20,}"),  # Discord "Authorization: Bot <token>"
)


CONTEXT_FIELDS = ("job", "user")
_known_secrets: set[str] = set()


def add_secrets(*values: str | None) -> None:
    """Redact these exact values from every log line from now on (configured tokens, keys)."""
    for value in values:
        if value and len(value) >= 4:  # as sent, and percent-encoded (`+/=` in a URL or form)
            encoded = (quote(value, safe=""), quote(value), quote_plus(value, safe=""))
            _known_secrets.update({value, *encoded})


def secrets_of(settings: object) -> list[str]:
    """The values of every SecretStr attribute of a settings object."""
    return [
        value.get_secret_value()
        for value in vars(settings).values()
        if hasattr(value, "get_secret_value")
    ]


def job_context(kind: str, job_id: int | str, *, user: int | str | None = None) -> dict[str, Any]:
    """`extra=` for a log call about one job (and the user it belongs to)."""
    context: dict[str, Any] = {"job": f"{kind}:{job_id}"}
    if user is not None:
        context["user"] = user
    return context


def redact(text: str) -> str:
    for secret in sorted(_known_secrets, key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)}[redacted]", text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with secrets removed before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in CONTEXT_FIELDS if hasattr(record, name)}


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message [job=... user=...]`, redacted as a whole (tracebacks too)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = _context(record)
        if context:
            line += " [" + " ".join(f"{key}={value}" for key, value in context.items()) + "]"
        return line

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            **_context(record),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(level: str = "INFO", fmt: str = "text", *, file: Path | None = None) -> None:
    """Log one line per event: `text` for people, `json` for log collectors.

    To stderr; with `file` (the console chat, whose terminal shows the conversation) to that
    file instead, with only errors still on stderr; Python `warnings` go there too, and
    diffusers' and transformers' own stderr handlers keep only errors."""
    formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handlers[0].setLevel(logging.ERROR)
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
    for handler in handlers:
        handler.addFilter(RedactingFilter())
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    # httpx logs every request URL at INFO: Telegram URLs hold the token. Keep it quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    if file is not None:
        # Their own stderr handlers would print into the chat: only their errors, there.
        for library in LIBRARIES_WITH_OWN_HANDLERS:
            os.environ.setdefault(f"{library.upper()}_VERBOSITY", "error")


LIBRARIES_WITH_OWN_HANDLERS = ("transformers", "diffusers")
"""They print through their own stderr handler (not ours) from their first log call on;
`<NAME>_VERBOSITY` sets its level, read at that call."""
