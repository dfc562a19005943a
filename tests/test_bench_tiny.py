"""The tiny-model benchmark keeps working: a small run times every row of both models."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from bench import tiny_model


@pytest.mark.slow
def test_small_run_times_both_models() -> None:
    args = ["--sizes", "64,128", "--old-sizes", "64", "--steps", "2", "--threads", "1"]
    results = tiny_model.main(args)
    assert set(results["new"]) == set(results["new_estimated"]) == {64, 128}
    assert set(results["old"]) == {64}
    for rows in results.values():
        assert all(t.wall > 0 and t.cpu > 0 for t in rows.values())
