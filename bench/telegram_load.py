"""Telegram load benchmark: can the bot keep up with a busy Telegram account?

Feeds a deterministic mix of updates (compressed photos and image files, /imagine, plain-text
prompts, /status, /models, /help, and presses of result buttons) through the fake Bot API of
`tests/fakes/telegram_api.py` into the real python-telegram-bot Application of our frontend,
with the fake Astria behind it. Each measurement has two phases:

- rate phase: `--updates` pushed open-loop at `--rate` per second; handled updates/s and p50/p99
  time from an update's arrival at the Bot API to the bot's first reply to it;
- burst phase: `--burst` updates at once; handled updates/s at saturation.

The baseline is a bare PTB echo bot (one reply per message, one answer per button, no work) on
the same fake and the same updates: the floor of the framework and the fake on this machine.
The machine may be shared, so the two are measured in turns, `--pairs` times (echo, ours,
echo, ours ...); every pair gets its ratios ours/echo and the verdict is the median of each
ratio over the pairs (bench/pairs.py). Targets (issue 20): handled rate >= 0.95x the echo
bot's, p99 <= 2x, burst throughput >= 0.9x. Beside each phase it prints the CPU per handled
update of the bot and of the harness, and the cores other processes took meanwhile
(bench/cpu.py): a slow phase on a busy machine says so.

Every measurement starts alike: a fresh fake Bot API and a fresh bot process; ours on a copy
of one data directory where `TRAINED_SHARE` of the users trained a model and got one result
(prepared once, at the start), with the fake Astria's leftover queued prompts dropped.
The bot runs in a process of its own (the fakes and the load generator in this one), as in
production where Telegram does not share the bot's CPU. Its outgoing rate limiter is replaced
by a pass-through, since Telegram's own cap (~30 messages/s per bot) would otherwise be the
thing measured. Only loopback traffic; each phase waits at most REPLY_WAIT_S for its replies.
A message update's reply is the first message the bot sends into its chat after it was pushed
(each chat gets at most one message update at a time; edits of earlier messages don't count); a
button press's is its answerCallbackQuery.

The bot charges credits, as a public bot does (CREDITS=on): each job takes its hold in its own
transaction and plain text answers with a priced preview. Every user has plenty of credits and
there are no limits, so the updates do the same work whatever the balance. `--credits off`
measures the same bot unmetered (what the ledger costs is the difference).

Usage: python bench/telegram_load.py [--pairs 3] [--updates 3000] [--rate 300] [--burst 600]
                                     [--credits on|off] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes, run as a script

from telegram import Update
from telegram.ext import (
    ApplicationBuilder,
    BaseRateLimiter,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bench import pairs
from bench.cpu import Reading, Usage
from bot import event_loop
from bot.app import running_core, serving
from bot.chat.telegram import TelegramFrontend
from bot.chat.telegram.frontend import CONNECTION_POOL_SIZE, LONG_POLL_TIMEOUT_S, POOL_TIMEOUT_S
from bot.chat.telegram.processor import PerChatUpdateProcessor
from bot.chat.telegram.transport import AiohttpRequest
from bot.config import Settings, load_settings
from tests.fakes.astria_server import FakeAstria
from tests.fakes.telegram_api import TOKEN, ApiCall, FakeTelegram, Users, buttons
from tests.imagegen import jpeg_bytes

REPO = Path(__file__).resolve().parents[1]
ASTRIA_KEY = "sd_bench_key"
TRAINED_SHARE = 3  # one user in this many has a trained model (and result buttons)
PHOTO_GAP_S = 3.0  # a user's photos this far apart: each starts its own counter message
MESSAGE_GAP_S = 0.5  # a chat's message updates at least this far apart (reply attribution)
REPLY_WAIT_S = 60.0
CHECK_EVERY_S = 0.5  # scanning the fake's record shares its CPU: not too often
SAMPLE_EVERY_S = 0.1  # CPU readings during a phase (a few /proc reads each)
Keyboards = dict[int, tuple[dict[str, Any], dict[str, str]]]
"""Trained user -> (the bot's result message with buttons, button text -> callback data)."""


class PassThroughLimiter(BaseRateLimiter):  # type: ignore[type-arg]
    """Sends every request at once: the bot's capacity, not Telegram's cap, is measured."""

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to free."""

    async def process_request(
        self,
        callback: Callable[..., Any],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: Any,
    ) -> Any:
        return await callback(*args, **kwargs)


@dataclass
class Pushed:
    """One update as pushed: its chat (messages) or query id (buttons), when, and its kind
    (for the latencies per kind: where a slow p99 comes from)."""

    chat_id: int | None
    query_id: str | None
    at: float
    kind: str


@dataclass
class Result:
    handled: int
    seconds: float
    latencies_ms: list[float]
    usage: Usage
    api_calls: int  # Bot API requests the bot made during the phase (getUpdates included)
    kinds: list[str]  # the kind of each latency's update

    def by_kind(self) -> dict[str, dict[str, float]]:
        """p50 and p99 per kind of update (the slow kinds are what to look into)."""
        grouped: dict[str, list[float]] = {}
        for kind, latency in zip(self.kinds, self.latencies_ms, strict=True):
            grouped.setdefault(kind, []).append(latency)
        return {
            kind: {
                "n": len(values),
                "p50_ms": round(_percentile(values, 50), 1),
                "p99_ms": round(_percentile(values, 99), 1),
            }
            for kind, values in sorted(grouped.items())
        }

    @property
    def per_second(self) -> float:
        return self.handled / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        return _percentile(self.latencies_ms, p)

    def summary(self) -> dict[str, float | None]:
        return {
            "handled": self.handled,
            "updates_per_s": round(self.per_second, 1),
            "p50_ms": round(self.percentile(50), 1),
            "p99_ms": round(self.percentile(99), 1),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 1) if self.latencies_ms else 0,
            "api_calls_per_update": round(self.api_calls / max(self.handled, 1), 2),
            "bot_cpu_ms_per_update": self.usage.bot_ms_per_update,
            "harness_cpu_ms_per_update": self.usage.harness_ms_per_update,
            "other_cores": self.usage.other_cores,
            "bot_cores": self.usage.bot_cores,
            "harness_cores": self.usage.harness_cores,
            "by_kind": self.by_kind(),
        }


def _percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


MESSAGES = (
    (0.45, "/imagine", "/imagine portrait in a sunlit studio, film grain"),
    (0.60, "plain text", "astronaut on the moon"),
    (0.80, "/status", "/status"),
    (0.92, "/models", "/models"),
    (1.00, "/help", "/help"),
)
"""The text messages of the mix: (cumulative share of a roll of 0..1 after the photos' 0.15,
kind, text)."""
KINDS = ("photo", "image file", *(kind for _, kind, _ in MESSAGES), "button")


class Load:
    """The users and their updates; `press` needs the result keyboards of trained users."""

    def __init__(self, users: Users, count: int, seed: int, keyboards: Keyboards) -> None:
        self.users = users
        self.keyboards = keyboards
        self.photos = [jpeg_bytes(1024, 1024, seed=1000 + n) for n in range(8)]
        self.random = random.Random(seed)
        self._pressers = list(keyboards)
        self._last_photo: dict[int, float] = {}
        # Chats that may get a message update now, and those waiting out MESSAGE_GAP_S (oldest
        # first): picking a chat costs O(1), not a scan of every user per update (that scan
        # was a tenth of this process's CPU, which the fakes share).
        self._free = [5_000_000 + n for n in range(count)]
        self._waiting: deque[tuple[float, int]] = deque()

    def push_one(self, at: float) -> Pushed:
        """Push one update of the mix now, `at` being time.monotonic() just before (one clock
        for every phase: a chat's last message of the previous phase counts). `at` is also the
        update's time: a reply can arrive before the push returns (this thread may lose the
        GIL to the fake serving it), and must still count, and count from the push.

        A chat gets a new message update only when its last one is MESSAGE_GAP_S old; when no
        chat is free (a burst larger than the users), a button press is pushed instead.
        """
        rnd = self.random
        while self._waiting and at - self._waiting[0][0] >= MESSAGE_GAP_S:
            self._free.append(self._waiting.popleft()[1])
        if not self._free:
            return self._press(rnd.choice(self._pressers), at)
        index = rnd.randrange(len(self._free))
        user = self._free[index]
        if user in self.keyboards and rnd.random() < 0.25:
            return self._press(user, at)
        self._free[index] = self._free[-1]  # the chat waits its gap now: O(1) removal
        self._free.pop()
        self._waiting.append((at, user))
        roll = rnd.random()
        if roll < 0.15 and at - self._last_photo.get(user, -1e9) > PHOTO_GAP_S:
            self._last_photo[user] = at
            data = rnd.choice(self.photos)
            if rnd.random() < 0.5:
                self.users.document(user, data, name="IMG.jpg")
                return Pushed(user, None, at, "image file")
            self.users.photo(user, data)
            return Pushed(user, None, at, "photo")
        kind, words = next((k, w) for share, k, w in MESSAGES if roll < share)
        self.users.message(user, text=words)
        return Pushed(user, None, at, kind)

    def _press(self, user: int, at: float) -> Pushed:
        message, labels = self.keyboards[user]
        label = self.random.choice([k for k in labels if k.startswith("✨")] + ["🔁 Reroll"])
        query = self.users.press(user, message, labels[label])
        return Pushed(None, query["id"], at, "button")


def trained_users(count: int) -> list[int]:
    """The users with a model: the same ones for both sides and every pair."""
    return [5_000_000 + n for n in range(count)][::TRAINED_SHARE]


async def run_phase(
    fake: FakeTelegram, load: Load, count: int, rate: float | None, bot_pid: int
) -> Result:
    """Push `count` updates (at `rate`/s, or all at once) and wait for every first reply.
    A burst's CPU figures end at the first reading after its last reply (one every
    SAMPLE_EVERY_S), not when the wait noticed it: it lasts about a second, and the work that
    follows its replies would otherwise be counted as its own. Not at a rate: each reading
    holds this process's interpreter lock for ~1.6 ms, which the fakes' answers would wait
    for (the echo bot's p99 read 3.7-3.9 ms with it, 2.5 ms without, 19:45-19:50 UTC)."""
    before, calls_before = Reading.now(bot_pid), len(fake.calls)
    readings: list[Reading] = []
    sampling = asyncio.create_task(_sample(bot_pid, readings)) if rate is None else None
    start = time.monotonic()
    pushed: list[Pushed] = []
    for index in range(count):
        if rate:
            await asyncio.sleep(max(0.0, start + index / rate - time.monotonic()))
        pushed.append(load.push_one(time.monotonic()))
    deadline = time.monotonic() + REPLY_WAIT_S
    replies: list[float | None] = [None] * count
    while time.monotonic() < deadline:
        replies = first_replies(fake.calls, pushed)
        if all(r is not None for r in replies):
            break
        await asyncio.sleep(CHECK_EVERY_S)
    if sampling is not None:
        sampling.cancel()
    done = [(p, r) for p, r in zip(pushed, replies, strict=True) if r is not None]
    if len(done) < count:
        print(f"  warning: {count - len(done)} update(s) got no reply in {REPLY_WAIT_S:.0f} s")
    last = max((r for _, r in done), default=start)
    after = next((r for r in readings if r.at >= last), None) or Reading.now(bot_pid)
    return Result(
        len(done),
        last - start,
        [(r - p.at) * 1000 for p, r in done],
        Usage.between(before, after, len(done)),
        len(fake.calls) - calls_before,
        [p.kind for p, _ in done],
    )


async def _sample(bot_pid: int, readings: list[Reading]) -> None:
    while True:
        await asyncio.sleep(SAMPLE_EVERY_S)
        readings.append(Reading.now(bot_pid))


def first_replies(calls: Sequence[ApiCall], pushed: Sequence[Pushed]) -> list[float | None]:
    """For each pushed update, when the bot first answered it (None: not yet)."""
    answers = {
        c.params.get("callback_query_id"): c.at
        for c in list(calls)
        if c.method == "answerCallbackQuery"
    }
    by_chat: dict[int, list[float]] = {}
    for call in list(calls):  # a reply is a new message; an edit belongs to an earlier update
        if call.chat_id is not None and call.method.startswith("send"):
            by_chat.setdefault(call.chat_id, []).append(call.at)
    found: list[float | None] = []
    for update in pushed:
        if update.query_id is not None:
            found.append(answers.get(update.query_id))
            continue
        times = by_chat.get(update.chat_id or 0, [])
        found.append(next((t for t in times if t >= update.at), None))
    return found


PAID_BOT: dict[str, Any] = {
    "credits": "on",
    "free_credits": 1_000_000,
    "limit_running_prompts": 0,
    "limit_running_trainings": 0,
    "limit_images_per_day": 0,
    "limit_trainings_per_day": 0,
}
"""A public bot's economics, without a balance or a limit ever refusing the load."""
ECONOMICS = tuple(PAID_BOT)
"""The settings the bot's process is given (`--credits off` leaves the others at default)."""


@contextlib.asynccontextmanager
async def our_bot(settings: Settings) -> AsyncIterator[None]:
    async with (
        running_core(settings) as core,
        serving(core, [TelegramFrontend(core, rate_limiter=PassThroughLimiter())]),
    ):
        yield


@contextlib.asynccontextmanager
async def echo_bot(settings: Settings) -> AsyncIterator[None]:
    """The baseline: the same PTB setup as our frontend (update processor, aiohttp transport,
    pool) answering every update at once, doing nothing else. With PTB's default httpx
    transport instead, the floor was the slower side under load (4.7 CPU ms an update against
    our 2.8) and the ratios flattered us."""

    async def reply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.callback_query is not None:
            await update.callback_query.answer("ok")
        elif update.effective_message is not None:
            await update.effective_message.reply_text("ok")

    assert settings.telegram_bot_token is not None
    application = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(settings.telegram_api_url)
        .base_file_url(settings.telegram_file_url)
        .rate_limiter(PassThroughLimiter())
        .concurrent_updates(PerChatUpdateProcessor())
        .request(AiohttpRequest(CONNECTION_POOL_SIZE, pool_timeout=POOL_TIMEOUT_S))
        .get_updates_request(AiohttpRequest(1))
        .build()
    )
    application.add_handler(MessageHandler(filters.ALL, reply))
    application.add_handler(CallbackQueryHandler(reply))
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(poll_interval=0, timeout=LONG_POLL_TIMEOUT_S)
        try:
            yield
        finally:
            await application.updater.stop()
            await application.stop()


async def train_users(fake: FakeTelegram, users: Users, trained: Sequence[int]) -> Keyboards:
    """Photos, /train, one /imagine each; returns the result keyboards the load presses."""
    photos = [jpeg_bytes(1024, 1024, seed=seed) for seed in range(4)]
    for user in trained:
        for index, data in enumerate(photos):
            users.document(user, data, name=f"{index}.jpg", album=f"setup-{user}")
    for user in trained:
        # an album may close in two batches under load: wait until all four are in the set
        await fake.wait_for(lambda c, u=user: _text_in(c, u, "(4 of 20"), within=120)
        users.message(user, text="/train man")
    for user in trained:
        await fake.wait_for(lambda c, u=user: _text_in(c, u, "is ready"), within=120)
        users.message(user, text="/imagine portrait")
    keyboards: Keyboards = {}
    for user in trained:
        keyboard = await fake.wait_for(
            lambda c, u=user: c.chat_id == u and "Image #" in str(c.params.get("text")),
            within=120,
        )
        keyboards[user] = (keyboard.result, buttons(keyboard.params))
    return keyboards


def _text_in(call: ApiCall, chat_id: int, words: str) -> bool:
    return call.chat_id == chat_id and words in str(call.params.get("text", ""))


def bot_settings(
    fake: FakeTelegram, astria: FakeAstria, data_dir: Path, credits: str = "on"
) -> Settings:
    """The bot's settings: charged (PAID_BOT) unless `credits` is "off"."""
    return load_settings(
        **(PAID_BOT if credits == "on" else {"credits": "off"}),
        telegram_bot_token=TOKEN,
        telegram_api_url=fake.api_url,
        telegram_file_url=fake.file_url,
        astria_api_key=ASTRIA_KEY,
        astria_api_url=astria.url,
        data_dir=data_dir,
    )


@contextlib.asynccontextmanager
async def bot_process(
    name: str,
    settings: Settings,
    fake: FakeTelegram,
    *,
    module: str = "bench.telegram_load",
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[int]:
    """The bot under test in a process of its own, as in production: the fakes (standing in
    for Telegram and Astria, which never share our CPU) do not share its interpreter lock.
    `module` is the child's entry (its `--serve NAME`; bench/profile_telegram.py wraps it
    in a profiler). Yields its pid."""
    assert settings.telegram_bot_token is not None and settings.astria_api_key is not None
    env = {
        **os.environ,
        "TELEGRAM_BOT_TOKEN": settings.telegram_bot_token.get_secret_value(),
        "TELEGRAM_API_URL": settings.telegram_api_url,
        "TELEGRAM_FILE_URL": settings.telegram_file_url,
        "ASTRIA_API_KEY": settings.astria_api_key.get_secret_value(),
        "ASTRIA_API_URL": settings.astria_api_url,
        "DATA_DIR": str(settings.data_dir),
        **{name.upper(): str(getattr(settings, name)) for name in ECONOMICS},
        "CONSENT_REQUIRED": "false",  # the trained users' one-time question is not the load
        **(extra_env or {}),
    }
    polls = len(fake.find("getUpdates"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, "--serve", name, env=env, cwd=REPO
    )
    try:
        await fake.wait_for(lambda c: len(fake.find("getUpdates")) > polls, within=60)
        yield process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()


def serve(name: str) -> None:
    """The child side of `bot_process`: run one bot on the environment's settings until
    SIGTERM."""

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with BOTS[name](load_settings()):
            await stop.wait()

    event_loop.run(run())  # both bots on the loop the bot runs on in production


@dataclass
class Bench:
    """What every measurement of one run shares: the options, the fake Astria, the users'
    keyboards and the prepared data directory our bot starts from."""

    args: argparse.Namespace
    astria: FakeAstria
    root: Path
    keyboards: Keyboards
    runs: int = 0

    @property
    def prepared(self) -> Path:
        return self.root / "prepared"

    async def prepare(self) -> None:
        """Train TRAINED_SHARE of the users once, with our bot, into `prepared`."""
        started = time.monotonic()
        trained = trained_users(self.args.users)
        with FakeTelegram() as fake:
            settings = bot_settings(fake, self.astria, self.prepared, self.args.credits)
            async with bot_process("ours", settings, fake):
                self.keyboards = await train_users(fake, Users(fake), trained)
        self.astria.prompt_seconds = 3600.0  # jobs started under load stay queued: no results
        print(f"prepared: {len(trained)} users trained in {time.monotonic() - started:.1f} s")

    async def measure(self, name: str) -> dict[str, Any]:
        """One side: a fresh fake Bot API, a fresh bot process, the rate then the burst."""
        self.runs += 1
        data_dir = self.root / f"{self.runs}-{name}"
        if name == "ours":
            shutil.copytree(self.prepared, data_dir)
        self.astria.drop_unfinished_prompts()  # the previous measurement's queued jobs
        # What the harness made so far (the fakes' records of earlier measurements) out of
        # the collector's sight: its full collections stalled the fakes for tens of ms,
        # which showed as a p99 of 60-115 ms in the echo bot's later pairs.
        gc.collect()
        gc.freeze()
        args = self.args
        with FakeTelegram() as fake:
            # the echo bot gets the same updates, button presses under the same messages
            load = Load(Users(fake), args.users, args.seed, self.keyboards)
            settings = bot_settings(fake, self.astria, data_dir, args.credits)
            async with bot_process(name, settings, fake) as pid:
                rate = await run_phase(fake, load, args.updates, args.rate, pid)
                burst = await run_phase(fake, load, args.burst, None, pid)
        shutil.rmtree(data_dir, ignore_errors=True)
        result = {"rate": rate.summary(), "burst": burst.summary()}
        print(side_line(name, args, result))
        print(kinds_line(result["rate"]["by_kind"]))
        return result


def side_line(name: str, args: argparse.Namespace, result: dict[str, Any]) -> str:
    rate, burst = result["rate"], result["burst"]
    return (
        f"  {name:8s} rate {args.rate:.0f}/s: {rate['updates_per_s']:6.1f} updates/s, "
        f"p50 {rate['p50_ms']:7.1f} ms, p99 {rate['p99_ms']:7.1f} ms | burst of {args.burst}: "
        f"{burst['updates_per_s']:6.1f} updates/s | CPU ms/update bot "
        f"{_figure(rate['bot_cpu_ms_per_update'])}, harness "
        f"{_figure(rate['harness_cpu_ms_per_update'])}, other processes "
        f"{_figure(rate['other_cores'])} cores\n"
        f"           burst: CPU ms/update bot {_figure(burst['bot_cpu_ms_per_update'])}, "
        f"harness {_figure(burst['harness_cpu_ms_per_update'])}; cores busy bot "
        f"{_figure(burst['bot_cores'])}, harness {_figure(burst['harness_cores'])}, other "
        f"processes {_figure(burst['other_cores'])}"
    )


def kinds_line(by_kind: dict[str, dict[str, float]]) -> str:
    return "           p50/p99 ms by kind: " + ", ".join(
        f"{kind} {v['p50_ms']:.0f}/{v['p99_ms']:.0f}" for kind, v in by_kind.items()
    )


def _figure(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    measured: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as root,
        FakeAstria(api_key=ASTRIA_KEY, train_seconds=0.2, prompt_seconds=0.1) as astria,
    ):
        bench = Bench(args, astria, Path(root), {})
        await bench.prepare()
        for number in range(1, args.pairs + 1):
            print(f"pair {number} of {args.pairs}:")
            echo = await bench.measure("baseline")
            ours = await bench.measure("ours")
            ratios = pairs.pair_ratios(echo, ours)
            print("  ours/echo: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
            measured.append({"baseline": echo, "ours": ours, "ratios": ratios})
    verdict = pairs.verdict([pair["ratios"] for pair in measured])
    print(pairs.verdict_line(verdict))
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end",
        "options": {k: v for k, v in vars(args).items() if k not in ("json", "serve")},
        "pairs": measured,
        "verdict": verdict,
    }


BOTS: dict[str, Callable[[Settings], contextlib.AbstractAsyncContextManager[None]]] = {
    "baseline": echo_bot,
    "ours": our_bot,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3, help="echo/ours pairs, interleaved")
    parser.add_argument("--updates", type=int, default=3000, help="updates in the rate phase")
    parser.add_argument("--rate", type=float, default=300.0, help="updates/s in the rate phase")
    parser.add_argument("--burst", type=int, default=600, help="updates in the burst phase")
    parser.add_argument("--users", type=int, default=300, help="distinct users (chats)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--credits", choices=["on", "off"], default="on", help="charge credits")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--serve", choices=list(BOTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run(parse_args(argv), serve, main_async)


def run(
    args: argparse.Namespace,
    serve_bot: Callable[[str], None],
    measure: Callable[[argparse.Namespace], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """The entry of this benchmark and of bench/profile_telegram.py: with `--serve`, this is
    the bot's process; else measure, and write the results to `--json` too."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)  # the fakes' pending polls
    if args.serve:
        serve_bot(args.serve)
        return {}
    results = asyncio.run(measure(args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
