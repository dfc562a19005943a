"""The fleet benchmark keeps working: a small run prints every row (real PostgreSQL)."""

from __future__ import annotations

import pytest

from bench import fleet


@pytest.mark.slow
def test_small_run_measures_every_row(pg_server: str) -> None:
    args = ["--workers", "1", "2", "--per-worker", "2", "--image-s", "0.2"]
    results = fleet.main([*args, "--overhead-jobs", "3", "--stalled-s", "3"])
    assert set(results["images_per_s"]) == {1, 2}
    assert results["scaling"][1] == 1.0 and results["scaling"][2] > 0
    assert results["overhead_ms"]["fleet"] > 0 and results["overhead_ms"]["sqlite"] > 0
    assert 0 < results["kill_to_rerun_s"] < 30
