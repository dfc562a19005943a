"""Who used the CPU during a benchmark phase: the bot, the harness, or someone else.

On a shared 2-core machine a slow phase can mean a slow bot, a load generator or fake that
starved it, or another job on the machine. The load benchmark reads these counters around
each phase and prints CPU milliseconds per handled update for the bot and for the harness
(load generator and fakes, one process), and how many cores everything else took meanwhile.
Linux /proc only; elsewhere the figures are None and the benchmark still runs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_s(pid: int, thread: int | None = None) -> float | None:
    """User + system CPU seconds of process `pid` (all its threads) so far; with `thread`,
    of that thread alone (the main thread's id is the pid)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        stat = Path(path).read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS


def tree_cpu_s(pid: int) -> float | None:
    """CPU seconds of process `pid` and of the processes it started that still run (the
    bot's photo process: its checks are the bot's work too)."""
    own = process_cpu_s(pid)
    if own is None:
        return None
    children = _children_by_parent()  # one pass over /proc for the whole tree
    below, total = list(children.get(pid, ())), own
    while below:
        child = below.pop()
        total += process_cpu_s(child) or 0.0
        below.extend(children.get(child, ()))
    return total


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


def machine_busy_s() -> float | None:
    """CPU seconds all cores spent busy since boot (idle and I/O wait left out)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    ticks = [int(value) for value in first[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICKS


@dataclass(frozen=True)
class Reading:
    """The counters at one moment."""

    at: float
    bot: float | None  # with the processes it started
    harness: float
    machine: float | None

    @classmethod
    def now(cls, bot_pid: int) -> Reading:
        return cls(time.monotonic(), tree_cpu_s(bot_pid), time.process_time(), machine_busy_s())


@dataclass(frozen=True)
class Usage:
    """CPU used between two readings, per handled update and by everyone else. With the
    cores the bot and the harness kept busy, a burst shows whether the machine was the limit
    (2 of 2 cores: the throughput is then the cores over the CPU per update)."""

    bot_ms_per_update: float | None
    harness_ms_per_update: float
    other_cores: float | None  # cores busy outside the bot and the harness, on average
    bot_cores: float | None  # cores the bot (its photo process included) kept busy, on average
    harness_cores: float

    @classmethod
    def between(cls, start: Reading, end: Reading, handled: int) -> Usage:
        per = 1000 / max(handled, 1)
        bot = None if start.bot is None or end.bot is None else end.bot - start.bot
        harness = end.harness - start.harness
        wall = max(end.at - start.at, 1e-9)
        others = None
        if bot is not None and start.machine is not None and end.machine is not None:
            others = max(0.0, (end.machine - start.machine - bot - harness) / wall)
        return cls(
            bot_ms_per_update=None if bot is None else round(bot * per, 2),
            harness_ms_per_update=round(harness * per, 2),
            other_cores=None if others is None else round(others, 2),
            bot_cores=None if bot is None else round(bot / wall, 2),
            harness_cores=round(harness / wall, 2),
        )
