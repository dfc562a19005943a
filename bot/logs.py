"""Logging set-up: one line per event, with secrets redacted wherever they slip in.

Telegram file URLs and Bot API URLs contain the bot token, and HTTP libraries log URLs,
so a filter scrubs token-shaped strings and bearer keys from every record.
"""

from __future__ import annotations

import logging
import re

_SECRET_PATTERNS = (
    re.compile(r"(bot)\d{5,}:[A-Za-z0-9_-]{20,}"),  # Telegram token inside URLs
    re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE),
    re.compile(r"(Bot\s+)[A-Za-z0-9._-]{20,}"),  # Discord "Authorization: Bot <token>"
)


def redact(text: str) -> str:
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


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO: Telegram URLs hold the token. Keep it quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
