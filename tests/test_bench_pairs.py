"""The load benchmark's verdict over interleaved pairs, and its CPU accounting."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench import pairs
from bench.cpu import Reading, Usage, machine_busy_s, process_cpu_s, tree_cpu_s


def side(rate: float, p99: float, burst: float) -> dict[str, dict[str, float]]:
    return {"rate": {"updates_per_s": rate, "p99_ms": p99}, "burst": {"updates_per_s": burst}}


def test_a_pair_compares_ours_with_the_echo_bot() -> None:
    ratios = pairs.pair_ratios(echo=side(300, 20, 600), ours=side(285, 50, 480))
    assert ratios == {"rate_vs_echo": 0.95, "p99_vs_echo": 2.5, "burst_vs_echo": 0.8}


def test_each_target_is_judged_on_its_median_over_the_pairs() -> None:
    ratios = [
        {"rate_vs_echo": 0.70, "p99_vs_echo": 9.0, "burst_vs_echo": 1.2},  # a disturbed pair
        {"rate_vs_echo": 0.99, "p99_vs_echo": 1.5, "burst_vs_echo": 0.95},
        {"rate_vs_echo": 1.01, "p99_vs_echo": 1.9, "burst_vs_echo": 0.5},
    ]
    result = pairs.verdict(ratios)
    targets = result["targets"]
    assert targets["rate_vs_echo"] == {"median": 0.99, "pair": 2, "rule": ">= 0.95x", "met": True}
    assert targets["p99_vs_echo"] == {"median": 1.9, "pair": 3, "rule": "<= 2x", "met": True}
    assert targets["burst_vs_echo"]["median"] == 0.95 and targets["burst_vs_echo"]["met"]
    assert result["met"]


def test_one_missed_median_fails_the_verdict_and_the_line_says_which() -> None:
    ratios = [
        {"rate_vs_echo": 0.96, "p99_vs_echo": 2.1, "burst_vs_echo": 1.0},
        {"rate_vs_echo": 0.97, "p99_vs_echo": 2.4, "burst_vs_echo": 1.0},
        {"rate_vs_echo": 0.98, "p99_vs_echo": 1.2, "burst_vs_echo": 1.0},
    ]
    result = pairs.verdict(ratios)
    assert not result["met"]
    assert not result["targets"]["p99_vs_echo"]["met"]
    line = pairs.verdict_line(result)
    assert "p99 2.10x (<= 2x: MISSED)" in line and line.endswith("target NOT met")
    assert "handled rate 0.97x (>= 0.95x: ok)" in line


def test_an_even_number_of_pairs_takes_the_middle_of_the_two() -> None:
    ratios = [{"rate_vs_echo": r, "p99_vs_echo": 1.0, "burst_vs_echo": 1.0} for r in (0.9, 1.0)]
    assert pairs.verdict(ratios)["targets"]["rate_vs_echo"]["median"] == 0.95


def test_no_pairs_is_no_verdict() -> None:
    with pytest.raises(ValueError):
        pairs.verdict([])


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="Linux /proc only")
def test_cpu_counters_read_this_process_and_the_machine() -> None:
    spent = process_cpu_s(os.getpid())
    busy = machine_busy_s()
    assert spent is not None and spent > 0
    assert busy is not None and busy >= spent
    assert process_cpu_s(2**22 + 12345) is None  # no such process


def test_usage_is_per_handled_update_and_others_get_the_rest() -> None:
    start = Reading(at=10.0, bot=1.0, harness=2.0, machine=100.0)
    end = Reading(at=12.0, bot=1.6, harness=2.2, machine=102.4)  # 2.4 core-seconds in 2 s
    usage = Usage.between(start, end, handled=300)
    assert usage == Usage(
        bot_ms_per_update=2.0,
        harness_ms_per_update=0.67,
        other_cores=0.8,
        bot_cores=0.3,
        harness_cores=0.1,
    )


def test_usage_without_proc_leaves_the_unknown_figures_out() -> None:
    start = Reading(at=time.monotonic(), bot=None, harness=0.0, machine=None)
    usage = Usage.between(start, Reading(start.at + 1, None, 0.5, None), handled=0)
    assert usage == Usage(
        bot_ms_per_update=None,
        harness_ms_per_update=500.0,
        other_cores=None,
        bot_cores=None,
        harness_cores=0.5,
    )


def test_the_bots_cpu_counts_the_processes_it_started() -> None:
    """The photo checks run in a child of the bot: its CPU is the bot's too."""
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        alone, with_child = process_cpu_s(os.getpid()), tree_cpu_s(os.getpid())
        assert alone is not None and with_child is not None and with_child >= alone + 0.3
    finally:
        child.kill()
        child.wait()
