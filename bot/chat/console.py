"""A terminal chat: the commands of docs/architecture.md §4, read line by line from stdin.

It is the quickest way to try the bot without a chat platform, and it is scriptable:
`printf '/photos ./me\n/train man\n' | photoshoot-bot chat`. Photos are given as paths
(files, globs or folders); results are saved under DATA_DIR and their paths printed. At the
end of input it waits for running jobs, so a script gets its images; interrupting it loses
nothing: the jobs resume on the next start.
"""

from __future__ import annotations

import asyncio
import getpass
import glob
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TextIO

from bot.chat.base import Core
from bot.core.admin import COMMANDS as ADMIN_COMMANDS
from bot.core.errors import UserError
from bot.core.photos import MAX_FILE_BYTES
from bot.core.records import ChatTarget, Delivery, GenerationRecord, ShootRecord, User
from bot.core.service import IncomingPhoto
from bot.core.shoot_jobs import ShotFiles
from bot.core.texts import languages, text
from bot.core.views import help_text, models_text, started_text

log = logging.getLogger(__name__)

PLATFORM = "console"
PROGRESS_LINE_INTERVAL_S = 5.0
CONSOLE_ARCHIVE_LIMIT_BYTES = 2**40
ANSWERED_DURING_WAIT = ("/cancel",)
"""Commands that act while /wait waits; other lines (a script's next steps) run after it."""
LOCALE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")
"""Where a terminal says its language, in gettext's order (`LANGUAGE` may list several)."""


def system_language() -> str | None:
    """The terminal's language tag (`de_DE.UTF-8`), the console's "platform language"."""
    for name in LOCALE_VARIABLES:
        if value := os.environ.get(name, "").split(":")[0]:
            return value
    return None


class ConsoleNotifier:
    """Prints job progress and results as lines, so they can be read by people and scripts."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def say(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            print(f"bot> {line}", file=self._out, flush=True)

    def status_edit_interval(self, delivery: Delivery) -> float:
        """A terminal can't edit a line it printed: a new progress line at most this often."""
        return PROGRESS_LINE_INTERVAL_S

    async def update_status(self, delivery: Delivery, text: str) -> str | None:
        self.say(f"[{delivery.job_kind} #{delivery.job_id}] {text}")
        return None

    async def send_text(self, delivery: Delivery, text: str) -> None:
        self.say(text)

    async def send_images(
        self, delivery: Delivery, generation: GenerationRecord, files: Sequence[Path]
    ) -> None:
        self.say(
            text(
                "console.images_saved",
                id=generation.id,
                prompt=generation.prompt_typed,
                count=len(files),
            )
        )
        for path in files:
            self.say(f"  {path.resolve()}")

    def archive_limit_bytes(self, delivery: Delivery) -> int:
        """A terminal takes any size: one ZIP."""
        return CONSOLE_ARCHIVE_LIMIT_BYTES

    async def send_shots(
        self, delivery: Delivery, shoot: ShootRecord, shots: Sequence[ShotFiles]
    ) -> None:
        count = sum(len(item.files) for item in shots)
        self.say(text("console.shots_saved", title=shoot.pack_title, count=count))
        for item in shots:
            for path in item.files:
                self.say(text("console.shot_line", path=path.resolve(), shot=item.shot.id))

    async def send_archive(
        self, delivery: Delivery, shoot: ShootRecord, parts: Sequence[Path]
    ) -> None:
        for part in parts:
            self.say(text("console.archive_saved", title=shoot.pack_title, path=part.resolve()))


def expand_photo_paths(arguments: Sequence[str]) -> list[Path]:
    """Files, globs and folders (their files, sorted) to a list of paths."""
    paths: list[Path] = []
    for argument in arguments:
        matches = sorted(glob.glob(str(Path(argument).expanduser()))) or [argument]
        for match in matches:
            path = Path(match)
            if path.is_dir():
                paths.extend(sorted(p for p in path.iterdir() if p.is_file()))
            else:
                paths.append(path)
    return paths


def _read_photo(path: Path) -> bytes:
    """Read at most one byte over the cap: intake refuses it without loading a huge file."""
    with path.open("rb") as handle:
        return handle.read(MAX_FILE_BYTES + 1)


def read_lines_in_background(stream: TextIO) -> asyncio.Queue[str | None]:
    """Feed `stream`'s lines into a queue from a daemon thread; None marks the end.

    A daemon thread (not `asyncio.to_thread`) because a blocked `readline` must not keep
    the process alive when it is asked to stop.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        for line in iter(stream.readline, ""):
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, name="console-stdin", daemon=True).start()
    return queue


class ConsoleChat:
    """The command loop of one console user."""

    def __init__(self, core: Core, *, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout):
        self._core = core
        self._service = core.service
        self._stdin = stdin
        self._notifier = ConsoleNotifier(stdout)
        self._target = ChatTarget(PLATFORM, "console", is_private=True)
        self._user: User | None = None
        self._confirm_delete = False
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._typed_ahead: deque[str | None] = deque()
        """Lines read during a /wait, to run after it (None: the input ended)."""
        self._handlers = {
            "/start": self._help,
            "/help": self._help,
            "/photos": self._photos,
            "/train": self._train,
            "/imagine": self._imagine,
            "/models": self._models,
            "/status": self._status,
            "/cancel": self._cancel,
            "/delete": self._delete,
            "/consent": self._consent,
            "/language": self._language,
            "/packs": self._packs,
            "/shoot": self._shoot,
            "/like": self._like,
            "/more": self._more,
            "/wait": self._wait,
            "/credits": self._credits,
            "/balance": self._credits,
            "/buy": self._buy,
            **{f"/{name}": self._admin_command(name) for name in (*ADMIN_COMMANDS, "admin")},
        }

    async def run(self) -> None:
        self._core.tracker.register_notifier(PLATFORM, self._notifier)
        name = getpass.getuser()
        self._user = await self._service.user(PLATFORM, name, name, system_language())
        languages.set_language(self._service.language(self._user))
        await self._core.start_jobs()
        self._notifier.say(text("console.welcome"))
        if notice := await self._service.retention_notice(PLATFORM, name):
            self._notifier.say(notice)
        self._lines = read_lines_in_background(self._stdin)
        while True:
            line = self._typed_ahead.popleft() if self._typed_ahead else await self._lines.get()
            if line is None:
                break
            line = line.strip()
            if line in ("/quit", "/exit"):
                return
            if line:
                await self.handle(line)
        if self._core.tracker.has_jobs():
            self._notifier.say(text("console.waiting"))
            await self._core.tracker.wait_idle()

    async def handle(self, line: str) -> None:
        command, _, argument = line.partition(" ")
        handler = self._handlers.get(command.lower())
        if handler is None and command.startswith("/"):
            self._notifier.say(text("console.unknown_command", command=command))
            return
        if handler is None:  # plain text: what it would make, and its price
            handler, argument = self._preview, line
        if command.lower() != "/delete":
            self._confirm_delete = False
        try:
            await handler(argument.strip())
        except UserError as exc:
            self._notifier.say(exc.message)

    @property
    def user(self) -> User:
        assert self._user is not None, "run() sets the user first"
        return self._user

    async def _help(self, _: str) -> None:
        self._notifier.say(help_text(text("console.photo_hint")) + "\n" + text("console.extras"))

    async def _photos(self, argument: str) -> None:
        paths = expand_photo_paths(argument.split())
        if not paths:
            self._notifier.say(text("console.photos_usage"))
            return
        incoming = []
        for path in paths:
            try:
                incoming.append(
                    IncomingPhoto(await asyncio.to_thread(_read_photo, path), path.name)
                )
            except OSError as exc:
                reason = exc.strerror or exc
                self._notifier.say(text("console.unreadable_file", path=path, reason=reason))
        if incoming:
            batch = await self._service.add_photos(self.user, incoming)
            self._notifier.say(batch.summary())

    async def _train(self, argument: str) -> None:
        class_name, _, label = argument.partition(" ")
        tune = await self._service.start_training(self.user, class_name, self._target, label)
        self._notifier.say(started_text("train.started_here", tune))

    async def _imagine(self, argument: str) -> None:
        started = await self._service.generate(self.user, argument, self._target)
        for note in started.notes:
            self._notifier.say(text("note", note=note))

    async def _preview(self, argument: str) -> None:
        """Plain text spends nothing: it says what /imagine would make of it, and the price."""
        preview = await self._service.preview(self.user, argument)
        notes = [text("note", note=note) for note in preview.notes]
        self._notifier.say(
            "\n".join([preview.text, *notes, text("console.make_it", prompt=argument)])
        )

    async def _credits(self, _: str) -> None:
        self._notifier.say(await self._service.account(self.user))

    async def _buy(self, _: str) -> None:
        self._notifier.say(text("buy.not_here"))

    def _admin_command(self, name: str) -> Callable[[str], Awaitable[None]]:
        """An admin command (ADMIN_IDS may name console:<user>); the console is private."""

        async def run(argument: str) -> None:
            self._notifier.say(await self._core.admin.run(self.user, name, argument, private=True))

        return run

    async def _models(self, argument: str) -> None:
        if argument:
            if not argument.lstrip("#").isdigit():
                self._notifier.say(text("console.models_usage"))
                return
            tune = await self._service.choose_model(self.user, int(argument.lstrip("#")))
            self._user = await self._service.user(PLATFORM, self.user.platform_user_id)
            self._notifier.say(text("models.now_active", model=tune.display_name))
            return
        self._user = await self._service.user(PLATFORM, self.user.platform_user_id)
        tunes = await self._service.list_models(self.user)
        self._notifier.say(models_text(tunes, self.user.active_tune_id))
        if len(tunes) > 1:
            self._notifier.say(text("console.models_hint"))

    async def _packs(self, argument: str) -> None:
        """`/packs` lists; `/packs <number|slug>` shows one, with what running it makes."""
        if not argument:
            self._notifier.say(await self._service.list_packs(self.user))
            self._notifier.say(text("console.packs_hint"))
            return
        offer = await self._service.pick_pack(self.user, argument)
        self._notifier.say(offer.details)
        hint = text("console.shoot_hint", label=offer.confirm_label, pack=offer.pack.slug)
        self._notifier.say(hint)

    async def _shoot(self, argument: str) -> None:
        """`/shoot <pack>`: the console's confirm of a pick (or a shoot asked for directly)."""
        started = await self._service.start_shoot(self.user, argument, self._target)
        self._notifier.say(started.text)

    async def _like(self, argument: str) -> None:
        liked = await self._service.like_shot(self.user, _number(argument))
        self._notifier.say(text("shoot.liked" if liked else "shoot.unliked"))

    async def _more(self, argument: str) -> None:
        started = await self._service.more_like_shot(self.user, _number(argument), self._target)
        for note in started.notes:
            self._notifier.say(text("note", note=note))

    async def _status(self, _: str) -> None:
        self._notifier.say((await self._service.status(self.user)).text)

    async def _cancel(self, _: str) -> None:
        self._notifier.say(await self._service.cancel(self.user))

    async def _language(self, argument: str) -> None:
        if argument:
            self._notifier.say(await self._service.choose_language(self.user, argument))
        else:
            self._notifier.say(self._service.language_report(self.user))
        self._user = await self._service.user(PLATFORM, self.user.platform_user_id)

    async def _wait(self, _: str) -> None:
        """Console only: block until running jobs finish, so scripts can train then imagine.

        Lines typed meanwhile keep their order and run after the wait, except /cancel, which
        acts at once (and so ends the wait)."""
        if self._core.tracker.has_jobs():
            idle = asyncio.ensure_future(self._core.tracker.wait_idle())
            try:
                while not idle.done():
                    await self._read_while(idle)
            finally:
                idle.cancel()
        self._notifier.say(text("console.no_jobs"))

    async def _read_while(self, idle: asyncio.Future[None]) -> None:
        """Take the next typed line unless `idle` comes first; run it now if it may jump."""
        if self._typed_ahead and self._typed_ahead[-1] is None:  # end of input: just wait
            await idle
            return
        typed = asyncio.ensure_future(self._lines.get())
        await asyncio.wait({idle, typed}, return_when=asyncio.FIRST_COMPLETED)
        if not typed.done():
            typed.cancel()
            return
        line = typed.result()
        if line is not None and line.strip().split(" ")[0].lower() in ANSWERED_DURING_WAIT:
            await self.handle(line.strip())
        else:
            self._typed_ahead.append(line)

    async def _consent(self, _: str) -> None:
        """The console's consent button (issue 15): asked by /train, answered here."""
        self._notifier.say(await self._service.give_consent(self.user))

    async def _delete(self, argument: str) -> None:
        if argument != "confirm" and not self._confirm_delete:
            self._confirm_delete = True
            self._notifier.say(text("console.delete_question"))
            return
        self._confirm_delete = False
        self._notifier.say(await self._service.delete_everything(self.user))
        name = self.user.platform_user_id
        self._user = await self._service.user(PLATFORM, name, name, system_language())


def _number(argument: str) -> int:
    """The number a console command names (`/like 3`, `/like #3`)."""
    number = argument.strip().lstrip("#")
    if not number.isdigit():
        raise UserError(text("shoot.not_yours"))
    return int(number)
