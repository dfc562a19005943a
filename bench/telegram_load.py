"""Telegram load benchmark: can the bot keep up with a busy Telegram account?

Feeds a deterministic mix of updates (compressed photos and image files, /imagine, plain-text
prompts, /status, /models, /help, and presses of result buttons) through the fake Bot API of
`tests/fakes/telegram_api.py` into the real python-telegram-bot Application of our frontend,
with the fake Astria behind it, and prints:

- rate phase: updates pushed open-loop at `--rate` per second; handled updates/s and p50/p99
  time from an update's arrival at the Bot API to the bot's first reply to it;
- burst phase: `--burst` updates at once; handled updates/s at saturation.

The baseline, measured in the same run on the same fake and the same updates, is a bare PTB
echo bot (one reply per message, one answer per button, no work): the floor of the framework
and the fake on this machine. The ratio says how much of that floor our bot keeps.

The bot runs in a process of its own (the fakes and the load generator in this one), as in
production where Telegram does not share the bot's CPU. Its outgoing rate limiter is replaced
by a pass-through, since Telegram's own cap (~30 messages/s per bot) would otherwise be the
thing measured.
A message update's reply is the first message the bot sends into its chat after it was pushed
(each chat gets at most one message update at a time; edits of earlier messages don't count); a
button press's is its answerCallbackQuery.

Target on 2 cores (issue 3): >= 300 updates/s with p99 < 100 ms.
Usage: python bench/telegram_load.py [--updates 3000] [--rate 300] [--burst 600] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
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

from bot.app import running_core, serving
from bot.chat.telegram import TelegramFrontend
from bot.chat.telegram.processor import PerChatUpdateProcessor
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
    """One update as pushed: its chat (messages) or query id (buttons), and when."""

    chat_id: int | None
    query_id: str | None
    at: float


@dataclass
class Result:
    handled: int
    seconds: float
    latencies_ms: list[float]

    @property
    def per_second(self) -> float:
        return self.handled / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0

    def summary(self) -> dict[str, float]:
        return {
            "handled": self.handled,
            "updates_per_s": round(self.per_second, 1),
            "p50_ms": round(self.percentile(50), 1),
            "p99_ms": round(self.percentile(99), 1),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 1) if self.latencies_ms else 0,
        }


class Load:
    """The users and their updates; `press` needs the result keyboards of trained users."""

    def __init__(self, users: Users, count: int, seed: int) -> None:
        self.users = users
        self.ids = [5_000_000 + n for n in range(count)]
        self.trained = self.ids[::TRAINED_SHARE]
        self.keyboards: dict[int, tuple[dict[str, Any], dict[str, str]]] = {}
        self.photos = [jpeg_bytes(1024, 1024, seed=1000 + n) for n in range(8)]
        self.random = random.Random(seed)
        self._last_photo: dict[int, float] = {}
        self._last_message: dict[int, float] = {}

    def push_one(self, at: float) -> Pushed:
        """Push one update of the mix now, `at` being time.monotonic() (one clock for every
        phase: a chat's last message of the previous phase counts).

        A chat gets a new message update only when its last one is MESSAGE_GAP_S old; when no
        chat is free (a burst larger than the users), a button press is pushed instead.
        """
        rnd = self.random
        free = [u for u in self.ids if at - self._last_message.get(u, -1e9) >= MESSAGE_GAP_S]
        if not free:
            return self._press(rnd.choice(list(self.keyboards)))
        user = rnd.choice(free)
        if user in self.keyboards and rnd.random() < 0.25:
            return self._press(user)
        self._last_message[user] = at
        roll = rnd.random()
        if roll < 0.15 and at - self._last_photo.get(user, -1e9) > PHOTO_GAP_S:
            self._last_photo[user] = at
            data = rnd.choice(self.photos)
            if rnd.random() < 0.5:
                self.users.document(user, data, name="IMG.jpg")
            else:
                self.users.photo(user, data)
        elif roll < 0.45:
            self.users.message(user, text="/imagine portrait in a sunlit studio, film grain")
        elif roll < 0.60:
            self.users.message(user, text="astronaut on the moon")
        elif roll < 0.80:
            self.users.message(user, text="/status")
        elif roll < 0.92:
            self.users.message(user, text="/models")
        else:
            self.users.message(user, text="/help")
        return Pushed(user, None, time.monotonic())

    def _press(self, user: int) -> Pushed:
        message, labels = self.keyboards[user]
        label = self.random.choice([k for k in labels if k.startswith("✨")] + ["🔁 Reroll"])
        query = self.users.press(user, message, labels[label])
        return Pushed(None, query["id"], time.monotonic())

    def stand_in_keyboards(self) -> None:
        """For the echo baseline: buttons under a message, as the trained users get them."""
        for user in self.trained:
            message = {"message_id": 1, "date": 0, "chat": {"id": user, "type": "private"}}
            self.keyboards[user] = (message, {"🔁 Reroll": "a:r", "✨ #1": "a:1", "✨ #2": "a:2"})


async def run_phase(fake: FakeTelegram, load: Load, count: int, rate: float | None) -> Result:
    """Push `count` updates (at `rate`/s, or all at once) and wait for every first reply."""
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
    done = [(p, r) for p, r in zip(pushed, replies, strict=True) if r is not None]
    if len(done) < count:
        print(f"  warning: {count - len(done)} update(s) got no reply in {REPLY_WAIT_S:.0f} s")
    last = max((r for _, r in done), default=start)
    return Result(len(done), last - start, [(r - p.at) * 1000 for p, r in done])


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


@contextlib.asynccontextmanager
async def our_bot(settings: Settings) -> AsyncIterator[None]:
    async with (
        running_core(settings) as core,
        serving(core, [TelegramFrontend(core, rate_limiter=PassThroughLimiter())]),
    ):
        yield


@contextlib.asynccontextmanager
async def echo_bot(settings: Settings) -> AsyncIterator[None]:
    """The baseline: the same PTB setup answering every update at once, doing nothing else."""

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
        .connection_pool_size(64)
        .build()
    )
    application.add_handler(MessageHandler(filters.ALL, reply))
    application.add_handler(CallbackQueryHandler(reply))
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(poll_interval=0, timeout=30)
        try:
            yield
        finally:
            await application.updater.stop()
            await application.stop()


async def prepare(fake: FakeTelegram, astria: FakeAstria, load: Load) -> None:
    """Trained users: photos, /train, one /imagine each, whose result buttons the load presses."""
    photos = [jpeg_bytes(1024, 1024, seed=seed) for seed in range(4)]
    for user in load.trained:
        for index, data in enumerate(photos):
            load.users.document(user, data, name=f"{index}.jpg", album=f"setup-{user}")
    for user in load.trained:
        # an album may close in two batches under load: wait until all four are in the set
        await fake.wait_for(lambda c, u=user: _text_in(c, u, "(4 of 20"), within=120)
        load.users.message(user, text="/train man")
    for user in load.trained:
        await fake.wait_for(lambda c, u=user: _text_in(c, u, "is ready"), within=120)
        load.users.message(user, text="/imagine portrait")
    for user in load.trained:
        keyboard = await fake.wait_for(
            lambda c, u=user: c.chat_id == u and "Image #" in str(c.params.get("text")),
            within=120,
        )
        load.keyboards[user] = (keyboard.result, buttons(keyboard.params))
    astria.prompt_seconds = 3600.0  # jobs started under load stay queued: no result traffic


def _text_in(call: ApiCall, chat_id: int, words: str) -> bool:
    return call.chat_id == chat_id and words in str(call.params.get("text", ""))


@contextlib.asynccontextmanager
async def bot_process(name: str, settings: Settings, fake: FakeTelegram) -> AsyncIterator[None]:
    """The bot under test in a process of its own, as in production: the fakes (standing in
    for Telegram and Astria, which never share our CPU) do not share its interpreter lock."""
    assert settings.telegram_bot_token is not None and settings.astria_api_key is not None
    env = {
        **os.environ,
        "TELEGRAM_BOT_TOKEN": settings.telegram_bot_token.get_secret_value(),
        "TELEGRAM_API_URL": settings.telegram_api_url,
        "TELEGRAM_FILE_URL": settings.telegram_file_url,
        "ASTRIA_API_KEY": settings.astria_api_key.get_secret_value(),
        "ASTRIA_API_URL": settings.astria_api_url,
        "DATA_DIR": str(settings.data_dir),
        "CONSENT_REQUIRED": "false",  # the trained users' one-time question is not the load
    }
    polls = len(fake.find("getUpdates"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.telegram_load", "--serve", name, env=env, cwd=REPO
    )
    try:
        await fake.wait_for(lambda c: len(fake.find("getUpdates")) > polls, within=60)
        yield
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

    asyncio.run(run())


async def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as data,
        FakeAstria(api_key=ASTRIA_KEY, train_seconds=0.2, prompt_seconds=0.1) as astria,
        FakeTelegram() as fake,
    ):
        settings = load_settings(
            telegram_bot_token=TOKEN,
            telegram_api_url=fake.api_url,
            telegram_file_url=fake.file_url,
            astria_api_key=ASTRIA_KEY,
            astria_api_url=astria.url,
            data_dir=Path(data),
        )
        load = Load(Users(fake), args.users, args.seed)
        async with bot_process(name, settings, fake):
            if name == "ours":
                started = time.monotonic()
                await prepare(fake, astria, load)
                print(f"  {name}: {len(load.trained)} users trained in "
                      f"{time.monotonic() - started:.1f} s")  # fmt: skip
            else:
                load.stand_in_keyboards()
            rate = await run_phase(fake, load, args.updates, args.rate)
            burst = await run_phase(fake, load, args.burst, None)
    return {"rate": rate.summary(), "burst": burst.summary()}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results = {}
    for name in BOTS:
        results[name] = await measure(name, args)
        rate, burst = results[name]["rate"], results[name]["burst"]
        print(
            f"{name:9s} rate {args.rate:.0f}/s: {rate['updates_per_s']:7.1f} updates/s, "
            f"p50 {rate['p50_ms']:6.1f} ms, p99 {rate['p99_ms']:6.1f} ms | "
            f"burst of {args.burst}: {burst['updates_per_s']:7.1f} updates/s"
        )
    ours, base = results["ours"], results["baseline"]
    results["ratio"] = {
        "burst_throughput_vs_echo": round(
            ours["burst"]["updates_per_s"] / max(base["burst"]["updates_per_s"], 1e-9), 3
        ),
        "p99_vs_echo": round(ours["rate"]["p99_ms"] / max(base["rate"]["p99_ms"], 1e-9), 2),
    }
    target = ours["burst"]["updates_per_s"] >= 300 and ours["rate"]["p99_ms"] < 100
    results["target_met"] = target
    print(
        f"ratio ours/echo: burst throughput {results['ratio']['burst_throughput_vs_echo']:.2f}x, "
        f"p99 {results['ratio']['p99_vs_echo']:.2f}x | target (>= 300/s, p99 < 100 ms): "
        f"{'met' if target else 'NOT met'}"
    )
    return results


BOTS: dict[str, Callable[[Settings], contextlib.AbstractAsyncContextManager[None]]] = {
    "baseline": echo_bot,
    "ours": our_bot,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=3000, help="updates in the rate phase")
    parser.add_argument("--rate", type=float, default=300.0, help="updates/s in the rate phase")
    parser.add_argument("--burst", type=int, default=600, help="updates in the burst phase")
    parser.add_argument("--users", type=int, default=300, help="distinct users (chats)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--serve", choices=["baseline", "ours"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)  # the fakes' pending polls
    if args.serve:
        serve(args.serve)
        return {}
    results = asyncio.run(main_async(args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
