"""The Telegram load benchmark keeps working: a small run where every update gets its reply."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import telegram_load


@pytest.mark.slow
def test_small_load_run_answers_every_update(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    args = ["--updates", "40", "--rate", "40", "--burst", "20", "--users", "6", "--json", str(out)]
    results = telegram_load.main(args)
    for name in ("baseline", "ours"):
        assert results[name]["rate"]["handled"] == 40
        assert results[name]["burst"]["handled"] == 20
        assert results[name]["rate"]["p99_ms"] > 0
    assert results["ratio"]["burst_throughput_vs_echo"] > 0
    assert out.read_text().startswith("{")
