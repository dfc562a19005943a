"""A fake Telegram Bot API server for tests and the load benchmark: the remote side, over HTTP.

The bot under test runs the real python-telegram-bot `Application` with `TELEGRAM_API_URL` and
`TELEGRAM_FILE_URL` pointed here. Tests play the users: they `push` updates (served to the
bot's `getUpdates` long poll) and register files (served by `getFile` and the download path
`/file/bot<token>/<path>`). Every Bot API call is recorded with its decoded parameters and
uploaded files, so tests assert on what a real chat would show. `inject` answers the next calls
of a method with an error, e.g. 429 with `retry_after`, as Telegram's flood control does.

Payments in Telegram Stars work as Telegram documents them: `sendInvoice` (currency XTR, one
price, no provider token), a `pre_checkout_query` the bot must answer (`answerPreCheckoutQuery`,
a reason when it says no), then a `successful_payment` message with a charge id, and
`refundStarPayment`, which refunds a charge of that user once. `Users.pay` plays the Telegram
app's part; `Users.pre_checkout` and `Users.successful_payment` push those updates directly.

Like `astria_server`, it is served from a background thread with its own event loop
(`threaded_server`), so the bot's loop and the server never block each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.threaded_server import ThreadedServer

TOKEN = "123456789:AAFakeTokenForTestsOnly_0123456789ab"
BOT_ID = 123456789
BOT_USERNAME = "photoshoot_test_bot"
JSON_FIELDS = frozenset(
    {"reply_markup", "media", "reply_parameters", "commands", "scope", "allowed_updates", "prices"}
)
DOWNLOAD_LIMIT = 20 * 1024 * 1024
COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
MAX_COMMAND_DESCRIPTION = 256
MAX_LONG_POLL_S = 0.5
"""The fake answers a long poll within this, whatever timeout the bot asks for, so stopping
the bot never waits on a full Telegram-sized (10 s and more) poll."""


@dataclass
class ApiCall:
    """One Bot API request as the fake saw it."""

    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    at: float = 0.0  # time.monotonic() when it arrived
    status: int = 200
    result: Any = None  # what the fake answered (the sent message, for sendMessage)

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return int(value) if value is not None else None


@dataclass
class _Injection:
    method: str
    status: int
    description: str
    retry_after: int | None
    times: int


def _url_encoded(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")


def _field(key: str, value: str) -> Any:
    """A form field as the Bot API reads it: the JSON_FIELDS hold JSON."""
    return json.loads(value) if key in JSON_FIELDS else value


def _error(status: int, description: str, retry_after: int | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return JSONResponse(body, status_code=status)


PHOTO_UPLOAD_LIMIT = 10 * 1000 * 1000
FILE_UPLOAD_LIMIT = 50 * 1000 * 1000
"""Photos up to 10 MB, other files up to 50 MB (../shared/reference/chat-platforms.md)."""


class FakeTelegram:
    """The fake server. `with FakeTelegram() as fake:` starts it on a free port."""

    def __init__(self, token: str = TOKEN, *, host: str = "127.0.0.1") -> None:
        self.token = token
        self.host = host
        self.url = ""
        self.calls: list[ApiCall] = []
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.webhook: dict[str, Any] | None = None
        self.charges: dict[str, dict[str, Any]] = {}  # charge id -> user_id, amount, refunded
        self.checkout_answers: dict[str, dict[str, Any]] = {}  # query id -> the bot's answer
        self._checkouts: set[str] = set()  # pre-checkout queries sent to the bot
        self.command_menus: dict[tuple[str, str], list[dict[str, str]]] = {}
        """(scope type, language_code or "") -> the commands setMyCommands last set there."""
        self._files: dict[str, tuple[str, bytes | None, int]] = {}  # id -> (path, data, size)
        self.upload_limits = {"photo": PHOTO_UPLOAD_LIMIT, "document": FILE_UPLOAD_LIMIT}
        """The Bot API's upload limits per kind (a test may lower them to see files split)."""
        self._updates: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._injections: list[_Injection] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._new_update: asyncio.Event | None = None
        self._closing = False  # long polls answer at once: stopping does not cut them off
        routes = [
            Route("/bot{token}/{method}", self._api, methods=["GET", "POST"]),
            Route("/file/bot{token}/{path:path}", self._download),
        ]
        self._server = ThreadedServer(
            Starlette(routes=routes),
            "FakeTelegram",
            host=host,
            around=self._in_server_loop,
            graceful_shutdown_s=1,  # requests in flight finish (long polls are answered at once)
        )
        self._methods: dict[str, Callable[[dict[str, Any], dict[str, bytes]], Any]] = {
            "getMe": lambda p, f: self.bot_user,
            "getUpdates": lambda p, f: None,  # async, handled in _api
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "sendPhoto": lambda p, f: self._send_media(p, f, "photo"),
            "sendDocument": lambda p, f: self._send_media(p, f, "document"),
            "sendMediaGroup": self._send_media_group,
            "getFile": self._get_file,
            "answerCallbackQuery": lambda p, f: True,
            "setMyCommands": self._set_my_commands,
            "deleteWebhook": self._delete_webhook,
            "setWebhook": self._set_webhook,
            "sendChatAction": lambda p, f: True,
            "deleteMessage": lambda p, f: True,
            "editMessageReplyMarkup": self._edit_reply_markup,
            "sendInvoice": self._send_invoice,
            "answerPreCheckoutQuery": self._answer_pre_checkout,
            "refundStarPayment": self._refund_star_payment,
        }

    @property
    def api_url(self) -> str:
        """TELEGRAM_API_URL for the bot (the token is appended to it)."""
        return f"{self.url}/bot"

    @property
    def file_url(self) -> str:
        """TELEGRAM_FILE_URL for the bot (the token is appended to it)."""
        return f"{self.url}/file/bot"

    @property
    def bot_user(self) -> dict[str, Any]:
        return {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "Photoshoot",
            "username": BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> FakeTelegram:
        self._server.start()
        self.url = self._server.url
        return self

    def __exit__(self, *exc_info: object) -> None:
        # A long poll still open (its bot already gone) would be cancelled by the server's
        # shutdown, which logs the cancellation with a traceback: it is answered first.
        self._closing = True
        self._wake_long_polls()
        self._server.stop()
        self._closing = False

    @contextlib.asynccontextmanager
    async def _in_server_loop(self) -> AsyncIterator[None]:
        """`push` wakes pending long polls through an event of the server's own loop."""
        self._loop = asyncio.get_running_loop()
        self._new_update = asyncio.Event()
        yield

    # -- what users do ---------------------------------------------------------------

    def push(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update (without `update_id`) for the bot's next getUpdates; returns it."""
        with self._lock:
            update = {"update_id": next(self._ids), **update}
            self._updates.append(update)
        self._wake_long_polls()
        return update

    def _wake_long_polls(self) -> None:
        if self._loop is not None and self._new_update is not None:
            self._loop.call_soon_threadsafe(self._new_update.set)

    def add_file(self, data: bytes | None, suffix: str = "jpg", size: int | None = None) -> str:
        """Register a file users can send; `data=None` with a `size` fakes a huge one."""
        with self._lock:
            number = next(self._ids)
            file_id = f"file-{number}"
            self._files[file_id] = (f"docs/file_{number}.{suffix}", data, size or len(data or b""))
        return file_id

    def file_size(self, file_id: str) -> int:
        return self._files[file_id][2]

    def inject(
        self,
        method: str,
        status: int = 429,
        *,
        retry_after: int | None = 1,
        description: str = "Too Many Requests: retry later",
        times: int = 1,
    ) -> None:
        """The next `times` calls of `method` are answered with this error instead."""
        with self._lock:
            self._injections.append(_Injection(method, status, description, retry_after, times))

    # -- assertions ------------------------------------------------------------------

    def find(
        self, method: str, chat_id: int | None = None, *, ok_only: bool = True
    ) -> list[ApiCall]:
        with self._lock:
            return [
                call
                for call in self.calls
                if call.method == method
                and (chat_id is None or call.chat_id == chat_id)
                and (call.status == 200 or not ok_only)
            ]

    async def wait_for(self, predicate: Callable[[ApiCall], bool], within: float = 10.0) -> ApiCall:
        """The first recorded call matching `predicate`, waiting for it to arrive."""
        deadline = time.monotonic() + within
        while True:
            with self._lock:
                found = next((c for c in self.calls if c.status == 200 and predicate(c)), None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                methods = [
                    (c.method, c.params.get("text") or c.params.get("caption")) for c in self.calls
                ]
                raise AssertionError(f"no matching Bot API call within {within}s; saw {methods}")
            await asyncio.sleep(0.01)

    # -- HTTP ------------------------------------------------------------------------

    async def _api(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.path_params["method"]
        params, files = await self._read(request)
        call = ApiCall(method, params, files, time.monotonic())
        with self._lock:
            self.calls.append(call)
            injected = self._take_injection(method)
        if injected is not None:
            call.status = injected.status
            return _error(injected.status, injected.description, injected.retry_after)
        if method == "getUpdates":
            return JSONResponse({"ok": True, "result": await self._get_updates(params)})
        handler = self._methods.get(method)
        if handler is None:
            call.status = 404
            return _error(404, "Not Found: method not found")
        try:
            with self._lock:
                result = handler(params, files)
        except _ApiError as exc:
            call.status = exc.status
            return _error(exc.status, exc.description)
        call.result = result
        return JSONResponse({"ok": True, "result": result})

    async def _read(self, request: Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        params: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        if request.method == "POST" and _url_encoded(request):
            # parsed here: Starlette's form parser costs several times more, and in the load
            # benchmark this process's CPU is taken from the 2 cores the bot runs on
            fields = parse_qsl((await request.body()).decode(), keep_blank_values=True)
            params.update((key, _field(key, value)) for key, value in fields)
        elif request.method == "POST":
            form = await request.form()
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    files[key] = await value.read()
                else:
                    params[key] = _field(key, value)
        params.update(request.query_params)
        return params, files

    def _take_injection(self, method: str) -> _Injection | None:
        for injection in self._injections:
            if injection.method == method and injection.times > 0:
                injection.times -= 1
                return injection
        return None

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Long poll: confirm updates below `offset`, then wait for newer ones."""
        offset = int(params.get("offset") or 0)
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), MAX_LONG_POLL_S)
        assert self._new_update is not None
        while True:
            with self._lock:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
                if self._updates or self._closing or time.monotonic() >= deadline:
                    return list(self._updates[: int(params.get("limit") or 100)])
                self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), deadline - time.monotonic())

    async def _download(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return Response(status_code=401)
        with self._lock:
            data = next(
                (d for p, d, _ in self._files.values() if p == request.path_params["path"]), None
            )
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="application/octet-stream")

    # -- methods ---------------------------------------------------------------------

    def _chat(self, chat_id: int) -> dict[str, Any]:
        if chat_id > 0:
            return {"id": chat_id, "type": "private", "first_name": f"user{chat_id}"}
        return {"id": chat_id, "type": "supergroup", "title": f"group{chat_id}"}

    def _new_message(self, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        message = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": self._chat(chat_id),
            "from": self.bot_user,
            **content,
        }
        if "reply_markup" in params:
            message["reply_markup"] = params["reply_markup"]
        self.messages[(chat_id, message["message_id"])] = message
        return message

    def _send_message(self, params: dict[str, Any], _: dict[str, bytes]) -> dict[str, Any]:
        return self._new_message(params, text=params["text"])

    def _edit_message_text(self, params: dict[str, Any], _: dict[str, bytes]) -> dict[str, Any]:
        key = (int(params["chat_id"]), int(params["message_id"]))
        message = self.messages.get(key)
        if message is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        if message.get("text") == params["text"] and "reply_markup" not in params:
            raise _ApiError(400, "Bad Request: message is not modified")
        message["text"] = params["text"]
        if "reply_markup" in params:
            message["reply_markup"] = params["reply_markup"]
        return message

    def _edit_reply_markup(self, params: dict[str, Any], _: dict[str, bytes]) -> dict[str, Any]:
        message = self.messages.get((int(params["chat_id"]), int(params["message_id"])))
        if message is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        markup = params.get("reply_markup") or {}
        if markup.get("inline_keyboard"):
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        return message

    def _send_invoice(self, params: dict[str, Any], _: dict[str, bytes]) -> dict[str, Any]:
        """Telegram's checks for an invoice in Stars: one price, no provider token."""
        prices = params.get("prices") or []
        if params.get("currency") != "XTR" or len(prices) != 1:
            raise _ApiError(400, "Bad Request: STARS_INVOICE_INVALID")
        if params.get("provider_token"):
            raise _ApiError(400, "Bad Request: PROVIDER_TOKEN_INVALID")
        for name, most in (("title", 32), ("description", 255)):
            if not 1 <= len(params.get(name) or "") <= most:
                raise _ApiError(400, f"Bad Request: invoice {name} must be 1-{most} characters")
        if not 1 <= len(str(params.get("payload") or "").encode()) <= 128:
            raise _ApiError(400, "Bad Request: INVOICE_PAYLOAD_INVALID")
        invoice = {
            "title": params["title"],
            "description": params["description"],
            "start_parameter": "",
            "currency": "XTR",
            "total_amount": int(prices[0]["amount"]),
        }
        return self._new_message(params, invoice=invoice)

    def _answer_pre_checkout(self, params: dict[str, Any], _: dict[str, bytes]) -> bool:
        query_id = str(params["pre_checkout_query_id"])
        if query_id not in self._checkouts or query_id in self.checkout_answers:
            raise _ApiError(400, "Bad Request: QUERY_ID_INVALID")
        ok = str(params.get("ok")).lower() == "true"
        if not ok and not params.get("error_message"):
            raise _ApiError(400, "Bad Request: ERROR_MESSAGE_EMPTY")
        self.checkout_answers[query_id] = {"ok": ok, "error_message": params.get("error_message")}
        return True

    def _refund_star_payment(self, params: dict[str, Any], _: dict[str, bytes]) -> bool:
        charge = self.charges.get(str(params["telegram_payment_charge_id"]))
        if charge is None or charge["user_id"] != int(params["user_id"]):
            raise _ApiError(400, "Bad Request: CHARGE_NOT_FOUND")
        if charge["refunded"]:
            raise _ApiError(400, "Bad Request: CHARGE_ALREADY_REFUNDED")
        charge["refunded"] = True
        return True

    def _media_content(self, kind: str, data: bytes, caption: str | None) -> dict[str, Any]:
        if len(data) > self.upload_limits[kind]:
            raise _ApiError(413, "Request Entity Too Large")
        file_id = self.add_file(data)
        size = len(data)
        if kind == "photo":
            content: dict[str, Any] = {
                "photo": [{"file_id": file_id, "file_unique_id": file_id, "width": 64,
                           "height": 64, "file_size": size}]
            }  # fmt: skip
        else:
            content = {"document": {"file_id": file_id, "file_unique_id": file_id,
                                    "file_size": size}}  # fmt: skip
        if caption:
            content["caption"] = caption
        return content

    def _send_media(
        self, params: dict[str, Any], files: dict[str, bytes], kind: str
    ) -> dict[str, Any]:
        data = files.get(kind)
        if data is None:
            raise _ApiError(400, f"Bad Request: there is no {kind} in the request")
        return self._new_message(params, **self._media_content(kind, data, params.get("caption")))

    def _send_media_group(
        self, params: dict[str, Any], files: dict[str, bytes]
    ) -> list[dict[str, Any]]:
        media = params["media"]
        if not 2 <= len(media) <= 10:
            raise _ApiError(400, "Bad Request: wrong number of media in the album")
        if len({item["type"] for item in media}) != 1:
            raise _ApiError(400, "Bad Request: documents can't be mixed with other media")
        group_id = str(next(self._ids))
        messages = []
        for item in media:
            name = str(item["media"]).removeprefix("attach://")
            if name not in files:
                raise _ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
            content = self._media_content(item["type"], files[name], item.get("caption"))
            messages.append(self._new_message(params, media_group_id=group_id, **content))
        return messages

    def _get_file(self, params: dict[str, Any], _: dict[str, bytes]) -> dict[str, Any]:
        file_id = params["file_id"]
        if file_id not in self._files:
            raise _ApiError(400, "Bad Request: invalid file_id")
        path, _, size = self._files[file_id]
        if size > DOWNLOAD_LIMIT:
            raise _ApiError(400, "Bad Request: file is too big")
        return {"file_id": file_id, "file_unique_id": file_id, "file_size": size,
                "file_path": path}  # fmt: skip

    def _delete_webhook(self, params: dict[str, Any], _: dict[str, bytes]) -> bool:
        self.webhook = None
        return True

    def _set_my_commands(self, params: dict[str, Any], _: dict[str, bytes]) -> bool:
        """As the Bot API: names of 1-32 of [a-z0-9_], descriptions of 1-256 characters, and
        an empty or two-letter ISO 639-1 `language_code`."""
        language = params.get("language_code", "")
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise _ApiError(400, "Bad Request: invalid language code specified")
        for command in params["commands"]:
            if not COMMAND_NAME.fullmatch(command["command"]):
                raise _ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(command["description"]) <= MAX_COMMAND_DESCRIPTION:
                raise _ApiError(400, "Bad Request: command description is too long")
        scope = (params.get("scope") or {"type": "default"})["type"]
        self.command_menus[(scope, language)] = params["commands"]
        return True

    def _set_webhook(self, params: dict[str, Any], _: dict[str, bytes]) -> bool:
        self.webhook = params
        return True


class _ApiError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


class Users:
    """Builds the updates real Telegram clients produce, for one fake server."""

    def __init__(self, fake: FakeTelegram) -> None:
        self._fake = fake
        self._message_ids = itertools.count(1)
        self.languages: dict[int, str] = {}
        """user id -> the `language_code` their Telegram app sends (none unless set here)."""

    @staticmethod
    def user(user_id: int, name: str = "", language: str | None = None) -> dict[str, Any]:
        user = {"id": user_id, "is_bot": False, "first_name": name or f"User{user_id}"}
        return user if language is None else {**user, "language_code": language}

    def _sender(self, user_id: int) -> dict[str, Any]:
        return self.user(user_id, language=self.languages.get(user_id))

    def message(
        self, user_id: int, chat_id: int | None = None, text: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Push a message from `user_id` into `chat_id` (their DM by default); returns it."""
        chat_id = user_id if chat_id is None else chat_id
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": self._fake._chat(chat_id),
            "from": self._sender(user_id),
            **extra,
        }
        if text is not None:
            message["text"] = text
            if text.startswith("/"):
                command = text.split()[0]
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        self._fake.push({"message": message})
        return message

    def photo(self, user_id: int, data: bytes, *, album: str | None = None) -> dict[str, Any]:
        """A compressed photo, as the Telegram clients send it (largest size last)."""
        file_id = self._fake.add_file(data)
        sizes = [
            {"file_id": f"{file_id}-thumb", "file_unique_id": "t", "width": 90, "height": 90},
            {"file_id": file_id, "file_unique_id": file_id, "width": 1280, "height": 1280,
             "file_size": self._fake.file_size(file_id)},
        ]  # fmt: skip
        return self.message(user_id, photo=sizes, **_album(album))

    def document(
        self,
        user_id: int,
        data: bytes | None,
        *,
        name: str = "photo.jpg",
        mime: str = "image/jpeg",
        size: int | None = None,
        album: str | None = None,
    ) -> dict[str, Any]:
        """A file sent "without compression"; `data=None` with `size` fakes a huge file."""
        file_id = self._fake.add_file(data, name.rpartition(".")[2], size)
        document = {"file_id": file_id, "file_unique_id": file_id, "file_name": name,
                    "mime_type": mime, "file_size": self._fake.file_size(file_id)}  # fmt: skip
        return self.message(user_id, document=document, **_album(album))

    def pre_checkout(self, user_id: int, payload: str, total: int, currency: str = "XTR") -> str:
        """Telegram asks the bot whether `user_id` may pay; returns the query id."""
        query_id = f"checkout-{next(self._message_ids)}"
        with self._fake._lock:
            self._fake._checkouts.add(query_id)
        query = {"id": query_id, "from": self.user(user_id), "currency": currency,
                 "total_amount": total, "invoice_payload": payload}  # fmt: skip
        self._fake.push({"pre_checkout_query": query})
        return query_id

    def successful_payment(
        self,
        user_id: int,
        payload: str,
        total: int,
        *,
        charge_id: str | None = None,
        currency: str = "XTR",
    ) -> dict[str, Any]:
        """The message Telegram sends once the stars are taken (its charge id can be given, to
        send the same payment twice); returns it."""
        charge_id = charge_id or f"stxFakeCharge{next(self._message_ids)}"
        with self._fake._lock:
            self._fake.charges.setdefault(
                charge_id, {"user_id": user_id, "amount": total, "refunded": False}
            )
        payment = {"currency": currency, "total_amount": total, "invoice_payload": payload,
                   "telegram_payment_charge_id": charge_id,
                   "provider_payment_charge_id": ""}  # fmt: skip
        return self.message(user_id, successful_payment=payment)

    async def pay(self, user_id: int, invoice: dict[str, Any]) -> str | None:
        """Pay an invoice the bot sent (its sendInvoice parameters) as the Telegram app does:
        ask the bot, and only if it says yes take the stars. Returns the charge id, or None
        when the bot refused."""
        total = int(invoice["prices"][0]["amount"])
        query_id = self.pre_checkout(user_id, invoice["payload"], total, invoice["currency"])
        await self._fake.wait_for(
            lambda c: c.method == "answerPreCheckoutQuery"
            and c.params["pre_checkout_query_id"] == query_id
        )  # fmt: skip
        if not self._fake.checkout_answers[query_id]["ok"]:
            return None
        message = self.successful_payment(user_id, invoice["payload"], total)
        return str(message["successful_payment"]["telegram_payment_charge_id"])

    def press(self, user_id: int, message: dict[str, Any], data: str) -> dict[str, Any]:
        """Press the inline button with callback `data` under the bot's `message`."""
        query = {
            "id": str(next(self._message_ids)),
            "from": self._sender(user_id),
            "chat_instance": "ci",
            "message": message,
            "data": data,
        }
        self._fake.push({"callback_query": query})
        return query


def _album(album: str | None) -> dict[str, Any]:
    return {"media_group_id": album} if album else {}


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """The inline keyboard of a bot message: button text -> callback_data (or url)."""
    rows = message.get("reply_markup", {}).get("inline_keyboard", [])
    return {b["text"]: b.get("callback_data") or b.get("url", "") for row in rows for b in row}
