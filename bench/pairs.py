"""The verdict of interleaved benchmark pairs: each pair's ratios, then the median of each.

On a shared machine one side of a single run can be slowed by someone else's job and the other
not. The load benchmark therefore measures the baseline and our bot in turns (echo, ours, echo,
ours ...); each pair's ratios compare two runs minutes apart, and the verdict takes, for each
ratio, the median over the pairs: one disturbed pair can neither pass nor fail it alone.
"""

from __future__ import annotations

import operator
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Summary = Mapping[str, Mapping[str, float]]
"""One side of a pair: {"rate": {"updates_per_s", "p99_ms", ...}, "burst": {...}}."""


@dataclass(frozen=True)
class Target:
    """A ratio ours/echo and the bound it must stay on the right side of."""

    name: str
    phase: str
    metric: str
    bound: float
    at_least: bool  # True: ratio >= bound; False: ratio <= bound
    words: str

    def ratio(self, echo: Summary, ours: Summary) -> float:
        floor = max(echo[self.phase][self.metric], 1e-9)
        return round(ours[self.phase][self.metric] / floor, 3)

    def met(self, ratio: float) -> bool:
        compare: Callable[[float, float], bool] = operator.ge if self.at_least else operator.le
        return compare(ratio, self.bound)

    @property
    def rule(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.bound:g}x"


TARGETS = (
    Target("rate_vs_echo", "rate", "updates_per_s", 0.95, True, "handled rate"),
    Target("p99_vs_echo", "rate", "p99_ms", 2.0, False, "p99"),
    Target("burst_vs_echo", "burst", "updates_per_s", 0.9, True, "burst"),
)
"""Issue 20: at the offered rate ours handles >= 0.95x the echo bot's updates/s with a p99 of
at most twice the echo bot's; in the burst >= 0.9x its throughput."""


def pair_ratios(echo: Summary, ours: Summary) -> dict[str, float]:
    """Every target's ratio ours/echo for one pair."""
    return {target.name: target.ratio(echo, ours) for target in TARGETS}


def verdict(ratios: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Per target: the median ratio over the pairs, the pair it came from (1-based; for an
    even count the median lies between two pairs, and the lower one is named) and whether it
    meets the bound; `met` when every target does."""
    if not ratios:
        raise ValueError("a verdict needs at least one pair")
    targets: dict[str, dict[str, Any]] = {}
    for target in TARGETS:
        values = [pair[target.name] for pair in ratios]
        median = round(statistics.median(values), 3)
        low = statistics.median_low(values)
        targets[target.name] = {
            "median": median,
            "pair": values.index(low) + 1,
            "rule": target.rule,
            "met": target.met(median),
        }
    return {"targets": targets, "met": all(t["met"] for t in targets.values())}


def verdict_line(result: Mapping[str, Any]) -> str:
    """One line for the console and the README: each median against its bound."""
    parts = []
    for target in TARGETS:
        entry = result["targets"][target.name]
        mark = "ok" if entry["met"] else "MISSED"
        parts.append(f"{target.words} {entry['median']:.2f}x ({entry['rule']}: {mark})")
    overall = "met" if result["met"] else "NOT met"
    return f"median of the pairs, ours/echo: {', '.join(parts)} | target {overall}"
