"""The ledger benchmark keeps working: a tiny run times every row it prints."""

from __future__ import annotations

from bench import ledger_holds


def test_a_tiny_run_times_every_row() -> None:
    result = ledger_holds.main(["--rounds", "1", "--batch", "5"])
    assert set(result) == {"plain", "charged", "deliver", "capture"}
    assert all(seconds > 0 for seconds in result.values())
