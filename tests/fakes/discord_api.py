"""A fake Discord: the REST API and the gateway over real HTTP and WebSocket (aiohttp).

discord.py builds every REST URL, interaction callbacks and webhook follow-ups included, from
`discord.http.Route.BASE`, and connects its gateway to `DiscordWebSocket.DEFAULT_GATEWAY`;
pointing both here (`base`, `gateway_url`) runs the real client code, login, IDENTIFY and
event dispatch included. Tests build event payloads here (`guild_create`, `command`,
`button`, `dm_message`) and `dispatch` them through the gateway connection. The fake checks
what Discord checks and matters to the bot: the bot token on REST calls, events only for the
intents asked for, interaction tokens that die after 15 minutes (401), one acknowledgement per
interaction, message limits (2000 characters, 10 files, each within the upload limit), and
closed DMs (403, code 50007). Every request is recorded; `wait_for` waits until one matches.

Premium apps: `buy` makes an entitlement to a SKU, as a purchase in Discord's store does, and
dispatches ENTITLEMENT_CREATE; the application's entitlements are listed (`GET
/applications/{app}/entitlements`, with `sku_ids`, `user_id`, `exclude_deleted`) and consumed
(`POST .../entitlements/{id}/consume`, 204; an unknown one 404, code 10068; consuming twice is
refused with a 400 of the fake's own making, as Discord's exact answer is not documented).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

DISCORD_EPOCH_MS = 1_420_070_400_000
TOKEN_LIFETIME = timedelta(minutes=15)
APP_ID = 900_000_000_000_000_001
GUILDS, GUILD_MESSAGES, DIRECT_MESSAGES = 1 << 0, 1 << 9, 1 << 12
PREMIUM_STYLE = 6
SELECT_TYPE = 3
"""A string select menu (message component type 3)."""
ENTITLEMENT_PURCHASE = 1
BOT_USER = {
    "id": str(APP_ID),
    "username": "photoshoot",
    "discriminator": "0",
    "global_name": None,
    "avatar": None,
    "bot": True,
    "mfa_enabled": False,
    "verified": True,
    "flags": 0,
}
Json = dict[str, Any]
LOCALES = frozenset({
    "id", "da", "de", "en-GB", "en-US", "es-ES", "es-419", "fr", "hr", "it", "lt", "hu", "nl",
    "no", "pl", "pt-BR", "ro", "fi", "sv-SE", "vi", "tr", "cs", "el", "bg", "ru", "uk", "hi",
    "th", "zh-CN", "ja", "zh-TW", "ko",
})  # fmt: skip
"""The locales Discord knows: an interaction's `locale`, the keys of `*_localizations`."""
COMMAND_NAME = re.compile(r"[-_'\w]{1,32}")
r"""Discord's `^[-_'\p{L}\p{N}...]{1,32}$`, lower case where the script has case."""


def snowflake_at(moment: datetime, counter: int = 0) -> int:
    """A Discord id whose timestamp is `moment` (the client reads creation times from ids)."""
    millis = int(moment.timestamp() * 1000) - DISCORD_EPOCH_MS
    return (millis << 22) | (counter & 0x3FFFFF)


def user_payload(user_id: int, name: str) -> Json:
    return {
        "id": str(user_id),
        "username": name,
        "discriminator": "0",
        "global_name": name,
        "avatar": None,
    }


@dataclass
class Call:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, str]
    json: Any = None
    files: list[tuple[str, bytes]] = field(default_factory=list)  # (filename, bytes)
    status: int = 0
    authorization: str = ""


@dataclass
class Posted:
    """A message the bot created, wherever it went (channel, follow-up, original response)."""

    id: int
    channel_id: int
    via: str  # "channel", "followup" or "original"
    payload: Json
    files: list[tuple[str, bytes]]

    @property
    def content(self) -> str:
        return self.payload.get("content") or ""

    @property
    def buttons(self) -> dict[str, str]:
        """Button label -> custom_id, in the order they are shown (premium buttons aside)."""
        return {
            button["label"]: button["custom_id"]
            for row in self.payload.get("components") or []
            for button in row.get("components", [])
            if "label" in button
        }

    @property
    def selects(self) -> dict[str, dict[str, str]]:
        """Select menus on the message: custom_id -> {option label: value}."""
        return {
            menu["custom_id"]: {option["label"]: option["value"] for option in menu["options"]}
            for row in self.payload.get("components") or []
            for menu in row.get("components", [])
            if menu.get("type") == SELECT_TYPE
        }

    @property
    def premium_skus(self) -> list[int]:
        """The SKU ids of Discord's purchase buttons (style 6) on the message."""
        return [
            int(button["sku_id"])
            for row in self.payload.get("components") or []
            for button in row.get("components", [])
            if button.get("style") == PREMIUM_STYLE
        ]

    @property
    def ephemeral(self) -> bool:
        return bool(int(self.payload.get("flags") or 0) & 64)


@dataclass
class _Interaction:
    id: int
    token: str
    channel_id: int
    created: datetime
    message_id: int | None = None  # the message a pressed button sits on
    original_id: int | None = None
    acknowledged: bool = False
    expired: bool = False


class FakeDiscord:
    """The REST side; `async with FakeDiscord() as fake:` serves it on a free local port."""

    def __init__(self, token: str = "fake.discord.token") -> None:
        self.token = token  # the bot token REST calls must carry (webhook calls carry none)
        self.base = ""
        self.gateway_url = ""
        self.guilds: list[Json] = []  # sent as GUILD_CREATE after READY
        self.identify: Json | None = None  # the client's IDENTIFY payload
        self.calls: list[Call] = []
        self.posted: dict[int, Posted] = {}
        self.closed_dms: set[int] = set()  # user ids whose DMs refuse the bot
        self.dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self.synced_commands: dict[str, list[Json]] = {}  # "global" or guild id -> commands
        self.attachment_size_limit = 10 * 1024 * 1024
        self.entitlements: dict[int, Json] = {}
        self._files: dict[str, tuple[bytes, str]] = {}
        self._interactions: dict[str, _Interaction] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self._sequence = itertools.count(1)
        self._changed = asyncio.Condition()
        self._routes = (
            ("GET", "users/@me", self._me),
            ("GET", "oauth2/applications/@me", self._application),
            ("PUT", "applications/{app}/commands", self._sync),
            ("PUT", "applications/{app}/guilds/{guild}/commands", self._sync),
            ("POST", "interactions/{id}/{token}/callback", self._callback),
            ("POST", "webhooks/{app}/{token}", self._followup),
            ("PATCH", "webhooks/{app}/{token}/messages/{message}", self._edit_webhook_message),
            ("POST", "channels/{channel}/messages", self._channel_send),
            ("PATCH", "channels/{channel}/messages/{message}", self._channel_edit),
            ("POST", "users/@me/channels", self._open_dm),
            ("GET", "applications/{app}/entitlements", self._list_entitlements),
            ("POST", "applications/{app}/entitlements/{id}/consume", self._consume),
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> FakeDiscord:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._dispatch)
        app.router.add_get("/cdn/{name}", self._cdn)
        app.router.add_get("/gateway", self._gateway)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}/api/v10"
        self.gateway_url = f"ws://127.0.0.1:{port}/gateway"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for socket in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def new_id(self, moment: datetime | None = None) -> int:
        return snowflake_at(moment or datetime.now(UTC), next(self._ids))

    # -- queries for tests ---------------------------------------------------------------------

    async def wait_for(self, found: Callable[[], Any], within: float = 10.0) -> Any:
        """Wait until `found()` returns something truthy (checked after every request)."""

        async def truthy() -> Any:
            async with self._changed:
                while not (result := found()):
                    await self._changed.wait()
                return result

        return await asyncio.wait_for(truthy(), within)

    async def dispatch(self, event: str, data: Json) -> None:
        """Send a gateway event to every connected client that asked for its intent."""
        if not self._intended(event, data):
            return
        for socket in self._sockets:
            await socket.send_json({"op": 0, "t": event, "s": next(self._sequence), "d": data})

    def _intended(self, event: str, data: Json) -> bool:
        """As Discord: guild events need GUILDS, messages GUILD_ or DIRECT_MESSAGES."""
        intents = int((self.identify or {}).get("intents", 0))
        if event == "MESSAGE_CREATE":
            return bool(intents & (GUILD_MESSAGES if "guild_id" in data else DIRECT_MESSAGES))
        return not event.startswith("GUILD_") or bool(intents & GUILDS)

    def original_response(self, interaction: Json) -> Posted | None:
        """The message the interaction's response created (or the one its button sits on)."""
        record = self._interactions.get(interaction["token"])
        return self.posted.get(record.original_id or 0) if record else None

    def expire(self, interaction: Json) -> None:
        """Let the interaction's token die now, as it does 15 minutes after its creation."""
        self._interactions[interaction["token"]].expired = True

    def find(self, method: str, path_part: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and path_part in c.path]

    def messages_in(self, channel_id: int) -> list[Posted]:
        return [m for m in self.posted.values() if m.channel_id == channel_id]

    def find_message(self, channel_id: int, words: str, *, after: Json) -> Posted | None:
        """The first message in the channel that says `words`, posted after the event `after`
        (ids grow with time, and the fake makes every id after the events it built)."""
        return next(
            (
                m
                for m in self.messages_in(channel_id)
                if m.id > int(after["id"]) and words in m.content
            ),
            None,
        )

    # -- premium apps ---------------------------------------------------------------------------

    def entitlement(self, user: Json, sku_id: int) -> Json:
        """A purchase of a SKU in Discord's store: the entitlement it creates (not yet sent)."""
        entitlement_id = self.new_id()
        self.entitlements[entitlement_id] = {
            "id": str(entitlement_id),
            "sku_id": str(sku_id),
            "application_id": str(APP_ID),
            "user_id": user["id"],
            "type": ENTITLEMENT_PURCHASE,
            "deleted": False,
            "consumed": False,
        }
        return self.entitlements[entitlement_id]

    async def buy(self, user: Json, sku_id: int) -> Json:
        """A user buys a SKU: the entitlement, dispatched as ENTITLEMENT_CREATE."""
        entitlement = self.entitlement(user, sku_id)
        await self.dispatch("ENTITLEMENT_CREATE", entitlement)
        return entitlement

    def _list_entitlements(self, call: Call, params: dict[str, str]) -> tuple[int, Any]:
        skus = set(filter(None, call.query.get("sku_ids", "").split(",")))
        user = call.query.get("user_id")
        keep_deleted = call.query.get("exclude_deleted") == "0"
        found = [
            dict(entitlement)
            for entitlement in self.entitlements.values()
            if (not skus or entitlement["sku_id"] in skus)
            and (user is None or entitlement["user_id"] == user)
            and (keep_deleted or not entitlement["deleted"])
        ]
        return 200, found[: int(call.query.get("limit") or 100)]

    def _consume(self, call: Call, params: dict[str, str]) -> tuple[int, Any]:
        entitlement = self.entitlements.get(int(params["id"]))
        if entitlement is None:
            return 404, {"code": 10068, "message": "Unknown Entitlement"}
        if entitlement["consumed"]:
            return 400, {"code": 0, "message": "fake: this entitlement was consumed already"}
        entitlement["consumed"] = True
        return 204, None

    # -- gateway payloads ----------------------------------------------------------------------

    def attachment(self, filename: str, data: bytes, content_type: str = "image/jpeg") -> Json:
        """An attachment as a slash command resolves it; its URL is served by this fake CDN."""
        attachment_id = str(self.new_id())
        name = f"{attachment_id}-{filename}"
        self._files[name] = (data, content_type)
        url = f"{self.base.removesuffix('/api/v10')}/cdn/{name}?ex=1&is=1&hm=signed"
        return {
            "id": attachment_id,
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }

    def guild_create(self, guild_id: int, channel_id: int, owner_id: int) -> Json:
        return {
            "id": str(guild_id),
            "name": "Test guild",
            "owner_id": str(owner_id),
            "unavailable": False,
            "large": False,
            "member_count": 2,
            "premium_tier": 0,
            "features": [],
            "emojis": [],
            "stickers": [],
            "members": [],
            "threads": [],
            "voice_states": [],
            "presences": [],
            "roles": [_everyone_role(guild_id)],
            "channels": [_guild_channel(guild_id, channel_id)],
        }

    def dm_message(self, user: Json, channel_id: int, attachments: Sequence[Json]) -> Json:
        """MESSAGE_CREATE of a user's message with files in their DM with the bot."""
        self.dm_channels.setdefault(int(user["id"]), channel_id)
        return _message(self.new_id(), channel_id, user, "", attachments=list(attachments))

    def command(
        self,
        name: str,
        options: list[Json],
        *,
        user: Json,
        channel_id: int,
        guild_id: int | None = None,
        attachments: Sequence[Json] = (),
        created: datetime | None = None,
        locale: str = "en-US",
    ) -> Json:
        """INTERACTION_CREATE for a slash command (type 2), from a client set to `locale`."""
        data: Json = {"id": str(self.new_id()), "name": name, "type": 1, "options": options}
        if attachments:
            data["resolved"] = {"attachments": {a["id"]: a for a in attachments}}
        return self._interaction(2, data, user, channel_id, guild_id, created, locale)

    def button(
        self,
        message: Posted,
        custom_id: str,
        *,
        user: Json,
        guild_id: int | None = None,
        created: datetime | None = None,
        locale: str = "en-US",
    ) -> Json:
        """INTERACTION_CREATE for a button press (type 3) on a message the bot posted."""
        data = {"custom_id": custom_id, "component_type": 2}
        payload = self._interaction(3, data, user, message.channel_id, guild_id, created, locale)
        payload["message"] = self._message_json(message)
        self._interactions[payload["token"]].message_id = message.id
        return payload

    def select(
        self,
        message: Posted,
        custom_id: str,
        values: list[str],
        *,
        user: Json,
        guild_id: int | None = None,
    ) -> Json:
        """INTERACTION_CREATE for a choice in a string select menu (type 3, component 3)."""
        menu = next(
            (m for row in message.payload.get("components") or [] for m in row["components"]
             if m.get("custom_id") == custom_id),
            None,
        )  # fmt: skip
        assert menu is not None, f"no select menu {custom_id!r} on the message"
        offered = {option["value"] for option in menu["options"]}
        assert set(values) <= offered, f"{values} not among the menu's options"
        data = {"custom_id": custom_id, "component_type": SELECT_TYPE, "values": values}
        payload = self._interaction(3, data, user, message.channel_id, guild_id, None, "en-US")
        payload["message"] = self._message_json(message)
        self._interactions[payload["token"]].message_id = message.id
        return payload

    def _interaction(
        self,
        kind: int,
        data: Json,
        user: Json,
        channel_id: int,
        guild_id: int | None,
        created: datetime | None,
        locale: str,
    ) -> Json:
        assert locale in LOCALES, f"Discord has no locale {locale!r}"
        created = created or datetime.now(UTC)
        interaction_id = self.new_id(created)
        token = f"itoken-{interaction_id}"
        self._interactions[token] = _Interaction(interaction_id, token, channel_id, created)
        payload: Json = {
            "id": str(interaction_id),
            "application_id": str(APP_ID),
            "type": kind,
            "data": data,
            "token": token,
            "version": 1,
            "channel_id": str(channel_id),
            "locale": locale,
            "entitlements": [],
            "app_permissions": "2248473465835073",
            "attachment_size_limit": self.attachment_size_limit,
        }
        if guild_id is None:
            self.dm_channels.setdefault(int(user["id"]), channel_id)
            payload["user"] = user
            payload["channel"] = {"id": str(channel_id), "type": 1, "recipients": [user]}
            payload["context"] = 1
            payload["authorizing_integration_owners"] = {"0": "0"}
        else:
            payload["guild_id"] = str(guild_id)
            payload["member"] = _member(user)
            payload["channel"] = _guild_channel(guild_id, channel_id)
            payload["context"] = 0
            payload["authorizing_integration_owners"] = {"0": str(guild_id)}
        return payload

    # -- HTTP ----------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.Response:
        path = request.match_info["tail"]
        call = Call(request.method, path, dict(request.query))
        call.authorization = request.headers.get("Authorization", "")
        await _read_body(request, call)
        self.calls.append(call)
        status, body = self._route(call)
        call.status = status
        async with self._changed:
            self._changed.notify_all()
        return _json(status, body)

    def _route(self, call: Call) -> tuple[int, Any]:
        bot_route = not call.path.startswith(("interactions/", "webhooks/"))
        if bot_route and call.authorization != f"Bot {self.token}":
            return 401, {"code": 0, "message": "401: Unauthorized"}
        if (refusal := self._refuse_message(call)) is not None:
            return refusal
        for method, pattern, handler in self._routes:
            params = _match(pattern, call.path)
            if method == call.method and params is not None:
                return handler(call, params)
        return 404, {"code": 0, "message": f"fake: no route {call.method} {call.path}"}

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        """HELLO, then READY and the guilds after IDENTIFY; heartbeats are acknowledged."""
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.send_json({"op": 10, "d": {"heartbeat_interval": 45_000}})
        async for frame in socket:
            message = json.loads(frame.data)
            if message["op"] == 1:
                await socket.send_json({"op": 11})
            elif message["op"] == 2:
                self.identify = message["d"]
                self._sockets.append(socket)
                await socket.send_json(
                    {"op": 0, "t": "READY", "s": next(self._sequence), "d": self._ready()}
                )
                for guild in self.guilds:
                    await self.dispatch("GUILD_CREATE", guild)
        if socket in self._sockets:
            self._sockets.remove(socket)
        return socket

    def _ready(self) -> Json:
        return {
            "v": 10,
            "user": BOT_USER,
            "guilds": [{"id": guild["id"], "unavailable": True} for guild in self.guilds],
            "session_id": "fake-session",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(APP_ID), "flags": 0},
        }

    async def _cdn(self, request: web.Request) -> web.Response:
        self.calls.append(Call("GET", f"cdn/{request.match_info['name']}", dict(request.query)))
        data, content_type = self._files.get(request.match_info["name"], (b"", ""))
        if not data:
            return web.Response(status=404)
        return web.Response(body=data, content_type=content_type)

    def _me(self, call: Call, params: dict[str, str]) -> tuple[int, Any]:
        return 200, BOT_USER

    def _application(self, call: Call, params: dict[str, str]) -> tuple[int, Any]:
        return 200, {
            "id": str(APP_ID),
            "name": "photoshoot",
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": user_payload(1, "owner"),
            "verify_key": "00",
            "flags": 0,
            "interactions_endpoint_url": None,
        }

    def _sync(self, call: Call, params: dict[str, str]) -> tuple[int, Any]:
        problems = [problem for command in call.json for problem in _command_problems(command)]
        if problems:
            return 400, {"code": 50035, "message": "Invalid Form Body", "errors": problems}
        commands = [
            {**command, "id": str(self.new_id()), "application_id": str(APP_ID), "version": "1"}
            for command in call.json
        ]
        self.synced_commands[params.get("guild", "global")] = commands
        return 200, commands

    def _refuse_message(self, call: Call) -> tuple[int, Any] | None:
        """Discord's message limits: 2000 characters, 10 files, each within the upload limit."""
        body = call.json if isinstance(call.json, dict) else {}
        contents = (body.get("content"), (body.get("data") or {}).get("content"))
        if any(isinstance(content, str) and len(content) > 2000 for content in contents):
            return 400, {"code": 50035, "message": "content: Must be 2000 or fewer in length."}
        if len(call.files) > 10:
            return 400, {"code": 50035, "message": "files: Must be 10 or fewer in length."}
        if any(len(data) > self.attachment_size_limit for _, data in call.files):
            return 413, {"code": 40005, "message": "Request entity too large"}
        return None

    def _callback(self, call: Call, params: dict[str, str]) -> tuple[int, Any]:
        record = self._interactions.get(params["token"])
        if record is None or record.acknowledged:
            return 400, {"code": 40060, "message": "Interaction has already been acknowledged."}
        body = call.json or {}
        kind = int(body.get("type", 0))
        data = body.get("data") or {}
        result: Json = {"interaction": {"id": str(record.id), "type": 2}}
        record.acknowledged = True
        if kind in (6, 7):  # (deferred) update of the message the button sits on
            record.original_id = record.message_id
            if kind == 7 and record.message_id in self.posted:
                self._edit(self.posted[record.message_id], Call("PATCH", "", {}, data, call.files))
        if kind in (4, 5):  # a message (or its "thinking" placeholder) is created
            message = self._store(record.channel_id, "original", data, call.files)
            record.original_id = message.id
            result["interaction"]["response_message_id"] = str(message.id)
            result["interaction"]["response_message_loading"] = kind == 5
            result["interaction"]["response_message_ephemeral"] = message.ephemeral
            result["resource"] = {"type": kind, "message": self._message_json(message)}
        return 200, result

    def _live(self, token: str) -> _Interaction | None:
        record = self._interactions.get(token)
        if record is None or record.expired or datetime.now(UTC) - record.created > TOKEN_LIFETIME:
            return None
        return record

    def _followup(self, call: Call, params: dict[str, str]) -> tuple[int, Any]:
        record = self._live(params["token"])
        if record is None:
            return 401, {"code": 50027, "message": "Invalid Webhook Token"}
        message = self._store(record.channel_id, "followup", call.json, call.files)
        return 200, self._message_json(message)

    def _edit_webhook_message(self, call: Call, params: dict[str, str]) -> tuple[int, Any]:
        record = self._live(params["token"])
        if record is None:
            return 401, {"code": 50027, "message": "Invalid Webhook Token"}
        message_id = record.original_id if params["message"] == "@original" else None
        message = self.posted.get(message_id or int(params["message"]))
        if message is None:
            return 404, {"code": 10008, "message": "Unknown Message"}
        return 200, self._message_json(self._edit(message, call))

    def _channel_send(self, call: Call, params: dict[str, str]) -> tuple[int, Any]:
        channel_id = int(params["channel"])
        closed = {self.dm_channels.get(user_id) for user_id in self.closed_dms}
        if channel_id in closed:
            return 403, {"code": 50007, "message": "Cannot send messages to this user"}
        message = self._store(channel_id, "channel", call.json, call.files)
        return 200, self._message_json(message)

    def _channel_edit(self, call: Call, params: dict[str, str]) -> tuple[int, Any]:
        message = self.posted.get(int(params["message"]))
        if message is None or message.channel_id != int(params["channel"]):
            return 404, {"code": 10008, "message": "Unknown Message"}
        return 200, self._message_json(self._edit(message, call))

    def _open_dm(self, call: Call, params: dict[str, str]) -> tuple[int, Any]:
        user_id = int(call.json["recipient_id"])
        channel_id = self.dm_channels.setdefault(user_id, self.new_id())
        recipient = user_payload(user_id, f"user{user_id}")
        return 200, {"id": str(channel_id), "type": 1, "recipients": [recipient]}

    # -- messages ------------------------------------------------------------------------------

    def _store(
        self, channel_id: int, via: str, payload: Json | None, files: list[tuple[str, bytes]]
    ) -> Posted:
        message = Posted(self.new_id(), channel_id, via, dict(payload or {}), list(files))
        self.posted[message.id] = message
        return message

    def _edit(self, message: Posted, call: Call) -> Posted:
        message.payload.update(call.json or {})
        if call.files:
            message.files = list(call.files)
        return message

    def _message_json(self, message: Posted) -> Json:
        payload = message.payload
        return _message(
            message.id,
            message.channel_id,
            BOT_USER,
            message.content,
            embeds=payload.get("embeds") or [],
            components=payload.get("components") or [],
            flags=int(payload.get("flags") or 0),
            attachments=[
                {
                    "id": str(self.new_id()),
                    "filename": name,
                    "size": len(data),
                    "url": f"{self.base.removesuffix('/api/v10')}/cdn/{name}",
                    "proxy_url": f"{self.base.removesuffix('/api/v10')}/cdn/{name}",
                }
                for name, data in message.files
            ],
        )


def _message(message_id: int, channel_id: int, author: Json, content: str, **fields: Any) -> Json:
    """A message object as Discord sends it; `fields` (attachments, embeds, ...) override."""
    return {
        "id": str(message_id),
        "channel_id": str(channel_id),
        "type": 0,
        "author": author,
        "content": content,
        "timestamp": datetime.now(UTC).isoformat(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "embeds": [],
        "components": [],
        "flags": 0,
        "pinned": False,
        "attachments": [],
        **fields,
    }


def _command_problems(item: Json) -> list[str]:
    """What Discord refuses in a slash command, an option or a choice (and their
    localisations): names of 1-32 lower-case letters, digits, `-`, `_`; descriptions and
    choice names of 1-100 characters; localisations keyed by a locale Discord knows."""
    problems = []
    is_choice = "value" in item
    names = [item["name"], *(item.get("name_localizations") or {}).values()]
    for name in names:
        ok = 1 <= len(name) <= 100 if is_choice else bool(COMMAND_NAME.fullmatch(name))
        if not ok or (not is_choice and name != name.lower()):
            problems.append(f"invalid name {name!r}")
    descriptions = [
        item.get("description"),
        *(item.get("description_localizations") or {}).values(),
    ]
    for description in descriptions if not is_choice else ():
        if not 1 <= len(description or "") <= 100:
            problems.append(f"description of {item['name']!r} must be 1-100 characters")
    for localized in ("name_localizations", "description_localizations"):
        problems += [
            f"unknown locale {key!r}" for key in item.get(localized) or {} if key not in LOCALES
        ]
    for child in (*(item.get("options") or ()), *(item.get("choices") or ())):
        problems += _command_problems(child)
    return problems


def _match(pattern: str, path: str) -> dict[str, str] | None:
    """Match `a/{x}/b` against a request path; the placeholders come back by name."""
    parts, actual = pattern.split("/"), path.strip("/").split("/")
    if len(parts) != len(actual):
        return None
    params: dict[str, str] = {}
    for expected, value in zip(parts, actual, strict=True):
        if expected.startswith("{"):
            params[expected.strip("{}")] = value
        elif expected != value:
            return None
    return params


async def _read_body(request: web.Request, call: Call) -> None:
    """JSON bodies, or discord.py's multipart: `payload_json` plus `files[n]` parts."""
    if request.content_type == "application/json":
        call.json = await request.json()
        return
    if not request.content_type.startswith("multipart/"):
        return
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        data = await part.read(decode=False)  # type: ignore[union-attr]
        if part.name == "payload_json":  # type: ignore[union-attr]
            call.json = json.loads(data)
        elif part.filename:  # type: ignore[union-attr]
            call.files.append((part.filename, bytes(data)))  # type: ignore[union-attr]


def _json(status: int, body: Any) -> web.Response:
    """discord.py only parses bodies whose content type is exactly `application/json`."""
    if status == 204:
        return web.Response(status=204)
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )


def _everyone_role(guild_id: int) -> Json:
    return {
        "id": str(guild_id),
        "name": "@everyone",
        "permissions": "2248473465835073",
        "position": 0,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
    }


def _guild_channel(guild_id: int, channel_id: int) -> Json:
    return {
        "id": str(channel_id),
        "type": 0,
        "name": "photoshoots",
        "guild_id": str(guild_id),
        "position": 0,
        "permission_overwrites": [],
        "nsfw": False,
    }


def _member(user: Json) -> Json:
    return {
        "user": user,
        "roles": [],
        "joined_at": datetime.now(UTC).isoformat(),
        "deaf": False,
        "mute": False,
        "flags": 0,
        "permissions": "2248473465835073",
    }
