"""`photoshoot-bot`: run the bot (`run`), the console chat (`chat`), the GPU worker (`worker`) or
one GPU worker of a fleet (`gpu-worker`).

`doctor` checks a deployment (configuration, backend key, chat tokens, data dir)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from bot import event_loop
from bot.config import ConfigError, Settings, load_settings
from bot.logs import add_secrets, secrets_of, setup_logging

log = logging.getLogger("bot")


async def run_console(settings: Settings) -> None:
    from bot.app import running_core
    from bot.chat.console import ConsoleChat

    async with running_core(settings) as core:
        await ConsoleChat(core).run()


def has_chat_token(settings: Settings) -> bool:
    """With no chat platform configured, `run` is the console chat."""
    return bool(settings.telegram_bot_token or settings.discord_bot_token)


async def run_frontends(settings: Settings) -> None:
    """Start every frontend whose token is set; with none, fall back to the console."""
    if not has_chat_token(settings):
        log.info("no TELEGRAM_BOT_TOKEN or DISCORD_BOT_TOKEN set: starting the console chat")
        await run_console(settings)
        return
    from bot.app import chat_frontends, running_core, serving

    async with running_core(settings) as core, serving(core, chat_frontends(core)):
        await asyncio.Event().wait()  # until a signal cancels us


async def until_signalled(work: Coroutine[Any, Any, None]) -> None:
    """Run `work`; SIGTERM or SIGINT cancels it, so every context closes in order.

    Cancellation unwinds through `running_core`, which stops the frontends (no new work),
    then the job tracker, and closes the store: unfinished jobs stay recorded and resume on the
    next start. A second signal does not cancel the clean-up itself (the service manager's stop
    timeout is the hard limit).
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stopping = False

    def stop(signum: signal.Signals) -> None:
        nonlocal stopping
        if stopping:
            log.info("%s: already stopping", signum.name)
            return
        stopping = True
        log.info("%s: stopping (no new work; running jobs are kept)", signum.name)
        task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    try:
        await work
    except asyncio.CancelledError:
        log.info("stopped by a signal; unfinished jobs resume on the next start")


def run_chat(work: Coroutine[Any, Any, None]) -> None:
    """Run the bot or the console until the end or a signal. A GPU step the in-process worker
    left running at the stop would hold up the interpreter's exit (and the unit's 30 s): the
    stores are closed and the job requeued, so the process ends without waiting for it."""
    event_loop.run(until_signalled(work))
    from bot.app import worker_threads_left

    if worker_threads_left():
        log.info("exiting without waiting for the GPU step left running")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def console_log_file(settings: Settings) -> Path:
    """Where the console's log goes: its terminal shows the conversation only."""
    return settings.data_dir / "logs" / "bot.log"


def run_worker(settings: Settings, host: str, port: int) -> None:
    try:
        from backends.local import serve
    except ImportError as exc:
        raise ConfigError(
            "The worker needs its extra: pip install torch==2.13.0 -e '.[worker]' "
            f"(missing: {exc.name})."
        ) from None
    from backends.local.fleet_config import FleetConfig
    from bot.app import worker_config

    key = settings.worker_api_key.get_secret_value() if settings.worker_api_key else None
    config = worker_config(settings, api_key=key)  # reads .env too
    try:  # fleet mode: its database and S3 keys stay out of the logs
        add_secrets(*FleetConfig.from_env().secrets())
    except ValueError as exc:  # the worker's ConfigError: a malformed fleet variable
        raise ConfigError(f"Bad configuration: {exc}") from None
    serve(host, port, config)


def run_worker_migrate() -> None:
    """`worker migrate`: the fleet's PostgreSQL schema (WORKER_DATABASE_URL, from the
    environment or `.env`)."""
    try:
        from backends.local.migrate import run_migrate
    except ImportError as exc:
        raise ConfigError(
            f"The worker fleet needs its extra: pip install -e '.[fleet]' (missing: {exc.name})."
        ) from None
    from dotenv import load_dotenv

    load_dotenv(".env", override=False)
    try:
        applied = run_migrate()
    except ValueError as exc:  # the worker's ConfigError: no, a bad or an unreachable database
        raise ConfigError(str(exc)) from None
    print(f"migrated: {', '.join(applied)}" if applied else "the worker database is up to date")


def run_gpu_worker() -> None:
    """`gpu-worker`: one fleet GPU worker (WORKER_DATABASE_URL, WORKER_STORAGE_URL and the
    worker's own variables, from the environment or `.env`)."""
    try:
        from backends.local.config import WorkerConfig
        from backends.local.gpu_worker import fleet_settings, run_gpu_worker
    except ImportError as exc:
        raise ConfigError(
            "The GPU worker needs its extras: pip install torch==2.13.0 -e '.[worker,fleet]'"
            f" (missing: {exc.name})."
        ) from None
    from dotenv import load_dotenv

    load_dotenv(".env", override=False)
    try:
        fleet = fleet_settings()
        add_secrets(*fleet.secrets())
        run_gpu_worker(WorkerConfig.from_env())
    except ValueError as exc:  # the worker's ConfigError: a bad value, an unmigrated database
        raise ConfigError(str(exc)) from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="photoshoot-bot", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    parser.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="json: one object a line"
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="start every frontend whose token is set (default)")
    commands.add_parser("chat", help="chat with the bot in this terminal")
    worker = commands.add_parser("worker", help="serve the Astria-compatible GPU worker API")
    worker.add_argument("--host", default="127.0.0.1")
    worker.add_argument("--port", type=int, default=7860)
    worker_commands = worker.add_subparsers(dest="worker_command")
    worker_commands.add_parser(
        "migrate", help="apply the fleet's PostgreSQL schema (WORKER_DATABASE_URL)"
    )
    commands.add_parser("gpu-worker", help="run one fleet GPU worker (WORKER_DATABASE_URL)")
    commands.add_parser("doctor", help="check the configuration, backend, chat tokens, data dir")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    if args.command == "doctor":
        from bot.doctor import doctor

        return doctor()
    try:
        if args.command == "worker" and args.worker_command == "migrate":
            run_worker_migrate()  # needs no bot settings: the fleet's database only
            return 0
        if args.command == "gpu-worker":
            run_gpu_worker()  # nor does a GPU worker: its own variables only
            return 0
        settings = load_settings()
        add_secrets(*secrets_of(settings))
        if args.command == "worker":
            run_worker(settings, args.host, args.port)
            return 0
        if args.command == "chat" or not has_chat_token(settings):
            setup_logging(args.log_level, args.log_format, file=console_log_file(settings))
        if args.command == "chat":
            run_chat(run_console(settings))
        else:
            run_chat(run_frontends(settings))
    except ConfigError as exc:
        print(f"photoshoot-bot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            print("\nStopped. Running jobs resume on the next start.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
