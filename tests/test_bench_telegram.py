"""The Telegram load benchmark keeps working: a small run of two interleaved pairs where every
update gets its reply, with the per-pair ratios and the median verdict reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import telegram_load


@pytest.mark.slow
def test_small_load_run_answers_every_update(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    args = ["--pairs", "2", "--updates", "40", "--rate", "40", "--burst", "20", "--users", "6"]
    results = telegram_load.main([*args, "--json", str(out)])
    assert len(results["pairs"]) == 2
    for pair in results["pairs"]:
        for name in ("baseline", "ours"):
            assert pair[name]["rate"]["handled"] == 40
            assert pair[name]["burst"]["handled"] == 20
            assert pair[name]["rate"]["p99_ms"] > 0
            assert pair[name]["rate"]["harness_cpu_ms_per_update"] > 0
            by_kind = pair[name]["rate"]["by_kind"]
            assert sum(kind["n"] for kind in by_kind.values()) == 40
            assert set(by_kind) <= {*telegram_load.KINDS} and "/imagine" in by_kind
        assert set(pair["ratios"]) == {"rate_vs_echo", "p99_vs_echo", "burst_vs_echo"}
        assert all(ratio > 0 for ratio in pair["ratios"].values())
    verdict = results["verdict"]
    assert isinstance(verdict["met"], bool)
    assert verdict["targets"]["rate_vs_echo"]["pair"] in (1, 2)
    assert json.loads(out.read_text())["verdict"] == verdict
    assert results["options"]["pairs"] == 2


def test_pairs_must_be_at_least_one() -> None:
    with pytest.raises(SystemExit):
        telegram_load.parse_args(["--pairs", "0"])
