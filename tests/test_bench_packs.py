"""The packs benchmark keeps working: a small run of both sides on the tiny model."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from bench import packs


@pytest.mark.slow
def test_small_pack_benchmark_run_reports_both_sides() -> None:
    result = packs.main(["--images", "4", "--reps", "1", "--singles", "1"])
    for side in ("separate", "pack"):
        assert result[side]["seconds"] > 0 and result[side]["binds"] >= 1
        assert len(result["fairness"][side]["single_waits_s"]) == 1
    assert result["pack_binds_once"] is True
    assert result["fairness"]["pack"]["binds"] == 2  # the single cut in once: one rebind
    assert result["ratio_separate_over_pack"] > 0
