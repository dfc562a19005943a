"""Where the bot's CPU goes per Telegram update, kind by kind, against the echo bot's.

Wall-clock load figures swing with whatever else runs on a shared machine; the CPU time a
process spends per handled update hardly does. This script feeds one kind of update at a
time (photo, /imagine, plain text, /status, /models, /help, result-button press) through the
fake Bot API of bench/telegram_load.py at a rate both bots keep up with, and prints, per kind,
the bot's CPU milliseconds per update (all its threads and its photo process, and the event-loop
thread alone) for the echo bot and ours, and their ratio.
The ratio is the robust figure: both are measured in the same run on the same machine.

With `--profile N`, ours runs once more under cProfile (which slows it, so its CPU figures are
not the ones above) and the N functions with the most own time, and the N of our code (bot/)
with the most cumulative time, are printed per kind in microseconds per update.

Each side is measured `--rounds` times in turns, and per kind the round with the least CPU is
kept: on a shared machine other processes can only add to a process's CPU time.

Usage: python bench/profile_telegram.py [--per-kind 300] [--rounds 2] [--rate 100]
                                        [--users 300] [--profile 15] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes, run as a script

from bench import telegram_load
from bench.cpu import process_cpu_s, tree_cpu_s
from bench.telegram_load import ASTRIA_KEY, Bench, Keyboards, Pushed, bot_process, bot_settings
from tests.fakes.astria_server import FakeAstria
from tests.fakes.telegram_api import FakeTelegram, Users
from tests.imagegen import jpeg_bytes

PROFILE_DIR_ENV = "BENCH_PROFILE_DIR"
SIDES = ("baseline", "ours")
IMAGINE = "/imagine portrait in a sunlit studio, film grain"


class KindLoad:
    """One kind of update, round robin over the users (the trained ones for button presses):
    at `--rate` 100/s and 300 users a chat's updates come 3 s apart, as the photo counter
    messages and reply attribution of bench/telegram_load.py need."""

    def __init__(self, users: Users, chats: list[int], keyboards: Keyboards, kind: str) -> None:
        self.users = users
        self.keyboards = keyboards
        self.chats = list(keyboards) if kind == "button" else chats
        self.kind = kind
        self.turn = 0
        self.photos = [jpeg_bytes(1024, 1024, seed=2000 + n) for n in range(4)]

    def push_one(self, at: float) -> Pushed:
        user = self.chats[self.turn % len(self.chats)]
        self.turn += 1
        if self.kind == "button":
            message, labels = self.keyboards[user]
            choices = [*sorted(k for k in labels if k.startswith("✨")), "🔁 Reroll"]
            query = self.users.press(user, message, labels[choices[self.turn % len(choices)]])
            return Pushed(None, query["id"], at, self.kind)
        PUSHERS[self.kind](self.users, user, self.photos[self.turn % len(self.photos)])
        return Pushed(user, None, at, self.kind)


Pusher = Callable[[Users, int, bytes], Any]
PUSHERS: dict[str, Pusher] = {
    "photo": lambda users, user, data: users.photo(user, data),
    "imagine": lambda users, user, data: users.message(user, text=IMAGINE),
    "text": lambda users, user, data: users.message(user, text="astronaut on the moon"),
    "status": lambda users, user, data: users.message(user, text="/status"),
    "models": lambda users, user, data: users.message(user, text="/models"),
    "help": lambda users, user, data: users.message(user, text="/help"),
}
KINDS = (*PUSHERS, "button")


@dataclass
class KindFigures:
    handled: int
    cpu_ms: float  # per update, every thread of the bot process
    loop_ms: float  # per update, the event loop's thread alone
    api_calls: float  # Bot API requests per update (getUpdates included)


SETTLED_CORES = 0.1
"""After a kind, the bot counts as done with it (its jobs submitted, their status messages
sent) once it uses less than this share of a core over SETTLE_WINDOW_S."""
SETTLE_WINDOW_S = 1.0
SETTLE_MAX_S = 10.0


async def settle(pid: int) -> None:
    """Wait until the bot is idle: work an update started (a job's submission, its status
    message) counts towards that update's kind, not the next one's."""
    for _ in range(int(SETTLE_MAX_S / SETTLE_WINDOW_S)):
        before = tree_cpu_s(pid) or 0.0
        await asyncio.sleep(SETTLE_WINDOW_S)
        if (tree_cpu_s(pid) or 0.0) - before < SETTLED_CORES * SETTLE_WINDOW_S:
            return


async def measure_side(bench: Bench, name: str, profile_dir: Path | None) -> dict[str, KindFigures]:
    """A fresh bot process and fake Bot API; every kind in turn. With `profile_dir` the bot
    dumps a cProfile file after each kind (0.prof: start-up, then one per kind)."""
    bench.runs += 1
    data_dir = bench.root / f"{bench.runs}-{name}"
    if name == "ours":
        shutil.copytree(bench.prepared, data_dir)
    bench.astria.drop_unfinished_prompts()
    args = bench.args
    chats = [5_000_000 + n for n in range(args.users)]
    extra = {PROFILE_DIR_ENV: str(profile_dir)} if profile_dir else {}
    figures: dict[str, KindFigures] = {}
    with FakeTelegram() as fake:
        users = Users(fake)
        settings = bot_settings(fake, bench.astria, data_dir, args.credits)
        async with bot_process(
            name, settings, fake, module="bench.profile_telegram", extra_env=extra
        ) as pid:
            await settle(pid)
            await _next_profile(pid, profile_dir, 0)
            for number, kind in enumerate(args.kinds, start=1):
                load = KindLoad(users, chats, bench.keyboards, kind)
                before = tree_cpu_s(pid), process_cpu_s(pid, pid)
                result = await telegram_load.run_phase(fake, load, args.per_kind, args.rate, pid)
                await settle(pid)
                after = tree_cpu_s(pid), process_cpu_s(pid, pid)
                await _next_profile(pid, profile_dir, number)
                per = 1000 / max(result.handled, 1)
                figures[kind] = KindFigures(
                    result.handled,
                    round(((after[0] or 0) - (before[0] or 0)) * per, 3),
                    round(((after[1] or 0) - (before[1] or 0)) * per, 3),
                    round(result.api_calls / max(result.handled, 1), 2),
                )
    shutil.rmtree(data_dir, ignore_errors=True)
    return figures


async def _next_profile(pid: int, profile_dir: Path | None, number: int) -> None:
    """Ask the profiled bot to dump what it has so far as `number`.prof, and wait for it."""
    if profile_dir is None:
        return
    os.kill(pid, signal.SIGUSR1)
    path = profile_dir / f"{number}.prof"
    for _ in range(200):
        if path.exists():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the bot wrote no {path}")


def serve(name: str) -> None:
    """The child: bench/telegram_load.py's bot, under cProfile when PROFILE_DIR_ENV is set.
    SIGUSR1 writes the profile so far as the next numbered file and starts a new one."""
    directory = os.environ.get(PROFILE_DIR_ENV)
    if not directory:
        telegram_load.serve(name)
        return
    profiler = cProfile.Profile(time.thread_time)  # CPU, not waits for the GIL
    dumped = 0

    def dump(signum: int, frame: object) -> None:
        nonlocal profiler, dumped
        profiler.disable()
        partial = Path(directory) / f"{dumped}.part"
        profiler.dump_stats(partial)
        partial.rename(partial.with_suffix(".prof"))  # appears whole
        dumped += 1
        profiler = cProfile.Profile(time.thread_time)  # CPU, not waits for the GIL
        profiler.enable()

    signal.signal(signal.SIGUSR1, dump)
    profiler.enable()
    telegram_load.serve(name)
    profiler.disable()


def top_functions(path: Path, handled: int, count: int) -> dict[str, list[str]]:
    """Own time per package, the `count` functions with the most own time, and the `count`
    of bot/ with the most cumulative time; microseconds per update, waiting in epoll left
    out (idle, not work)."""
    entries = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    rows = []
    packages: dict[str, float] = {}
    for (filename, number, function), (_, calls, own, cumulative, _) in entries.items():
        where = f"{_short(filename)}:{number}({function})"
        if "select.epoll" in where:
            continue
        rows.append((where, calls, own, cumulative, "/bot/" in filename))
        package = _package(filename, function)
        packages[package] = packages.get(package, 0.0) + own
    per = 1e6 / max(handled, 1)

    def line(row: tuple[str, int, float, float, bool], value: float) -> str:
        return f"{value * per:8.0f} us {row[1] / max(handled, 1):7.2f} calls  {row[0]}"

    by_own = sorted(rows, key=lambda r: r[2], reverse=True)[:count]
    ours = sorted((r for r in rows if r[4]), key=lambda r: r[3], reverse=True)[:count]
    return {
        "packages": [
            f"{seconds * per:8.0f} us  {name}"
            for name, seconds in sorted(packages.items(), key=lambda p: p[1], reverse=True)
        ][:count],
        "own": [line(r, r[2]) for r in by_own],
        "ours_cumulative": [line(r, r[3]) for r in ours],
    }


def _package(filename: str, function: str) -> str:
    """`telegram`, `aiohttp`, `bot/core`, `asyncio`, ... or the built-in's name."""
    if filename == "~":
        return f"builtin {function.split(' of ')[-1].strip('<>')[:40]}"
    if "/site-packages/" in filename:
        return filename.split("/site-packages/", 1)[1].split("/", 1)[0]
    if "/bot/" in filename:
        return "bot/" + filename.rsplit("/bot/", 1)[1].split("/", 1)[0]
    return filename.rsplit("/", 2)[-2] if "/" in filename else filename


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return "bot/" + filename.rsplit("/bot/", 1)[1] if "/bot/" in filename else filename


async def measure_rounds(bench: Bench) -> dict[str, dict[str, KindFigures]]:
    """Both sides `--rounds` times in turns (echo, ours, echo, ours ...); per side and kind
    the round with the least CPU counts: other processes can only add to a process's CPU
    time (cache misses, switches), never take from it."""
    rounds: dict[str, list[dict[str, KindFigures]]] = {name: [] for name in SIDES}
    for _ in range(bench.args.rounds):
        for name in SIDES:
            rounds[name].append(await measure_side(bench, name, None))
    return {
        name: {
            kind: min((r[kind] for r in runs), key=lambda f: f.cpu_ms) for kind in bench.args.kinds
        }
        for name, runs in rounds.items()
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as root,
        FakeAstria(api_key=ASTRIA_KEY, train_seconds=0.2, prompt_seconds=0.1) as astria,
    ):
        bench = Bench(args, astria, Path(root), {})
        await bench.prepare()
        sides = await measure_rounds(bench)
        report: dict[str, Any] = {"kinds": {}}
        print(f"{'kind':8s} {'echo ms':>8s} {'ours ms':>8s} {'ratio':>6s} {'loop ms':>8s} calls")
        for kind in args.kinds:
            echo, ours = sides["baseline"][kind], sides["ours"][kind]
            ratio = round(ours.cpu_ms / max(echo.cpu_ms, 1e-9), 2)
            print(
                f"{kind:8s} {echo.cpu_ms:8.2f} {ours.cpu_ms:8.2f} {ratio:6.2f} {ours.loop_ms:8.2f}"
                f" {ours.api_calls:5.2f}"
            )
            report["kinds"][kind] = {"echo": vars(echo), "ours": vars(ours), "ratio": ratio}
        report["mix"] = mix_ratio(sides)
        if report["mix"] is not None:
            print(f"the load benchmark's mix, ours/echo CPU per update: {report['mix']:.2f}x")
        if args.profile:
            profile_dir = Path(root) / "profile"
            profile_dir.mkdir()
            profiled = await measure_side(bench, "ours", profile_dir)
            report["profile"] = {}
            for number, kind in enumerate(args.kinds, start=1):
                top = top_functions(
                    profile_dir / f"{number}.prof", profiled[kind].handled, args.profile
                )
                report["profile"][kind] = top
                print(f"\n== {kind}: own time by package, per update (cProfile, loop thread)")
                print("\n".join(top["packages"]))
                print(f"-- {kind}: most own time")
                print("\n".join(top["own"]))
                print(f"-- {kind}: our code, cumulative")
                print("\n".join(top["ours_cumulative"]))
    return report


MIX = {"photo": 0.1, "imagine": 0.3, "text": 0.15, "status": 0.2, "models": 0.12, "help": 0.08}
"""Roughly bench/telegram_load.py's mix of message updates; button presses take the rest."""


def mix_ratio(sides: dict[str, dict[str, KindFigures]]) -> float | None:
    """ours/echo CPU per update over the load benchmark's mix of kinds (None: some kinds
    were not measured)."""
    weights = {**MIX, "button": 1 - sum(MIX.values())}
    if any(kind not in sides["ours"] for kind in weights):
        return None
    echo = sum(w * sides["baseline"][k].cpu_ms for k, w in weights.items())
    ours = sum(w * sides["ours"][k].cpu_ms for k, w in weights.items())
    return round(ours / max(echo, 1e-9), 2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-kind", type=int, default=300, help="updates of each kind")
    parser.add_argument("--rounds", type=int, default=2, help="echo/ours rounds, least CPU")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="only these")
    parser.add_argument("--rate", type=float, default=100.0, help="updates/s pushed")
    parser.add_argument("--users", type=int, default=300, help="distinct users (chats)")
    parser.add_argument("--credits", choices=["on", "off"], default="on", help="charge credits")
    parser.add_argument("--profile", type=int, default=0, help="print this many top functions")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--serve", choices=SIDES, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return telegram_load.run(parse_args(argv), serve, main_async)


if __name__ == "__main__":
    main()
