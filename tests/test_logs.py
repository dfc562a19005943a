"""Log lines: one per event, job and user context attached, configured secrets never printed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot import logs
from bot.config import load_settings

SECRET = "sd_live_secret_key_value"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    saved = set(logs._known_secrets)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield logging.getLogger("tests.logs"), io.StringIO()
    root.handlers[:], root.level = handlers, level
    logs._known_secrets.clear()
    logs._known_secrets.update(saved)


def use(stream: io.StringIO, fmt: str) -> None:
    logs.setup_logging("INFO", fmt)
    logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]


def test_text_lines_carry_context_and_hide_configured_secrets(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = captured
    use(stream, "text")
    logs.add_secrets(*logs.secrets_of(load_settings(astria_api_key=SECRET)))
    log.info("tune %s finished", 5, extra=logs.job_context("tune", 5, user=3))
    try:
        raise RuntimeError(f"backend said no to {SECRET}")
    except RuntimeError:
        log.exception("generation crashed", extra=logs.job_context("generation", 9))

    text = stream.getvalue()
    assert "tune 5 finished [job=tune:5 user=3]" in text
    assert "generation crashed [job=generation:9]" in text
    assert "Traceback" in text and "[redacted]" in text
    assert SECRET not in text


def test_json_lines_are_one_object_per_event(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = captured
    use(stream, "json")
    logs.add_secrets(SECRET)
    log.info("prompt sent with %s", SECRET, extra=logs.job_context("generation", 2, user=7))
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("failed")

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "prompt sent with [redacted]"
    assert (first["job"], first["user"], first["level"]) == ("generation:2", 7, "INFO")
    assert "ValueError: boom" in second["exception"]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_key_with_url_characters_is_redacted_in_every_encoding(
    captured: tuple[logging.Logger, io.StringIO], fmt: str
) -> None:
    """A key holding `+/=` reaches logs raw, percent-encoded (a URL path or query) or
    form-encoded (`+` for a space): none of them may show it (issue 13, item 9)."""
    from urllib.parse import quote, quote_plus

    log, stream = captured
    use(stream, fmt)
    key = "sk+abc/def=ghi jkl"
    logs.add_secrets(key)
    for shown in (key, quote(key, safe=""), quote_plus(key, safe=""), quote(key)):
        log.warning("GET /callbacks/tune/5/%s -> 404", shown)
    text = stream.getvalue()
    assert text.count("[redacted]") == 4
    for shown in (key, quote(key, safe=""), quote_plus(key, safe="")):
        assert shown not in text
