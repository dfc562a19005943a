"""The README stays true: its configuration table and its set-up commands."""

from __future__ import annotations

import re
from pathlib import Path

from bot.config import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_configuration_table_lists_exactly_the_settings() -> None:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section))
    assert documented == {name.upper() for name in Settings.model_fields}


def test_ci_runs_the_readme_test_command() -> None:
    [test_command] = re.findall(r"\| run the tests \| `([^`]+)` \|", README)
    assert test_command in (ROOT / ".ci" / "run").read_text()
    assert test_command.endswith("pytest")
