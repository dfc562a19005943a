"""bench/profile_telegram.py keeps working: a small run measures the CPU of both bots per
update kind, every update answered, and prints a cProfile of ours per kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import profile_telegram


@pytest.mark.slow
def test_small_profile_run_measures_each_kind_for_both_bots(tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    args = ["--per-kind", "20", "--rate", "40", "--users", "6", "--rounds", "1"]
    kinds = ["help", "button"]
    report = profile_telegram.main([*args, "--kinds", *kinds, "--profile", "3", "--json", str(out)])
    assert list(report["kinds"]) == kinds
    for figures in report["kinds"].values():
        for side in ("echo", "ours"):
            assert figures[side]["handled"] == 20
            assert figures[side]["cpu_ms"] > 0
            # the two clocks are read one after the other: a tick (10 ms, 0.5 per update) apart
            assert 0 <= figures[side]["loop_ms"] <= figures[side]["cpu_ms"] + 1.0
        assert figures["ratio"] > 0
    assert report["mix"] is None  # not every kind of the mix was measured
    for kind in kinds:
        profile = report["profile"][kind]
        assert len(profile["own"]) == 3 and len(profile["ours_cumulative"]) == 3
        assert all("bot/" in line for line in profile["ours_cumulative"])
    assert json.loads(out.read_text())["kinds"] == report["kinds"]


def test_every_kind_of_the_mix_is_a_kind_it_can_push() -> None:
    assert set(profile_telegram.MIX) | {"button"} == set(profile_telegram.KINDS)
