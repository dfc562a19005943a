"""A fake Astria API server for tests: the remote side, over real HTTP.

Follows Astria's API (docs.astria.ai; our subset: docs/architecture.md §2): Bearer auth,
Rails-style form or JSON bodies, optional `.json` suffix, tunes that train on a short clock,
prompts that wait for their LoRA's tune and then produce real PNG images served from `/files/`,
callbacks POSTed once (never retried), and failure injection (`fail_next`, `delay_next`) for
the client's error paths.

It runs uvicorn in a background thread with its own event loop, so sync tests, async tests and
bot subprocesses can all reach it. Standalone (for subprocess tests):

    python -m tests.fakes.astria_server --port 0 --api-key sd_test --train-seconds 1

prints `URL=http://127.0.0.1:PORT` as its first line and serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import re
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from PIL import Image
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.threaded_server import ThreadedServer

GALLERY_TUNE_IDS = frozenset({666678, 1504944, 690204})
"""Public base models (SDXL 1.0, Flux1.dev, Realistic Vision): prompt targets, never listed."""
SCHEDULERS = frozenset(
    {"euler", "euler_a", "dpm++2m", "dpm++2m_karras", "dpm++sde", "dpm++sde_karras", "lcm", "tcd"}
)
LORA_TAG = re.compile(r"<lora:([^:>]+):([^>]*)>")
BRANCHES = {666678: "sdxl1", 1504944: "flux1", 690204: "sd15"}
TUNE_OFFSET_CAP = 200
PROMPT_OFFSET_CAP = 10_000
TICK_S = 0.02
NO_CONTENT = object()
"""A route's body meaning "answer with an empty body" (likes: `201 Created`, nothing else)."""


@dataclass
class RecordedRequest:
    """One request as the fake saw it (after body parsing), for assertions."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    form: dict[str, list[str]] = field(default_factory=dict)
    files: list[tuple[str, str, bytes]] = field(default_factory=list)  # (field, filename, bytes)
    file_content_types: list[str] = field(default_factory=list)  # parallel to `files`
    json: Any = None


@dataclass
class _Injection:
    method: str
    path_prefix: str
    times: int
    status: int = 0
    body: Any = None
    retry_after: str | None = None
    delay: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and path.startswith(self.path_prefix)


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(moment: datetime | None) -> str | None:
    """Astria's timestamp format: ISO-8601 UTC with milliseconds and `Z`."""
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _bool(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes", "on")


def _int(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _HttpError(422, f"{name} must be an integer") from None


def _float(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _HttpError(422, f"{name} must be a number") from None


INSPECT_DEFAULT: dict[str, Any] = {
    "age": "30 yo",
    "blurry": False,
    "ethnicity": "caucasian",
    "eye_color": "brown eyes",
    "facial_hair": "",
    "full_body_image_or_longshot": False,
    "funny_face": False,
    "glasses": "",
    "hair_color": "brunette",
    "hair_length": "medium hair",
    "hair_style": "wavy hair",
    "includes_multiple_people": False,
    "is_bald": "",
    "selfie": True,
    "wearing_hat": False,
    "wearing_sunglasses": False,
}
"""Astria's documented example answer (its `name` is the class asked for)."""


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def solid_png(size: tuple[int, int], seed: str) -> bytes:
    """A PNG of one colour derived from `seed`: every generated image is distinguishable."""
    r, g, b = hashlib.sha256(seed.encode()).digest()[:3]
    buffer = io.BytesIO()
    Image.new("RGB", size, (r, g, b)).save(buffer, format="PNG")
    return buffer.getvalue()


class FakeAstria:
    """The fake server. `with FakeAstria() as fake:` starts it; `fake.url` is its base URL."""

    def __init__(
        self,
        api_key: str = "sd_test",
        train_seconds: float = 0.3,
        prompt_seconds: float = 0.2,
        image_size: tuple[int, int] = (64, 64),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        files_require_auth: bool = False,
    ) -> None:
        self.api_key = api_key
        self.train_seconds = train_seconds
        self.prompt_seconds = prompt_seconds
        self.image_size = image_size
        self.files_require_auth = files_require_auth  # False = like S3; True = like our worker
        self.host = host
        self.port = port
        self.url = ""
        # State for assertions (the API objects exactly as served).
        self.tunes: dict[int, dict[str, Any]] = {}
        self.prompts: dict[int, dict[str, Any]] = {}
        self.requests: list[RecordedRequest] = []
        self.callbacks_sent: list[tuple[str, dict[str, Any]]] = []
        self.callback_repeats = 1
        """How often each callback is POSTed: 2 plays an at-least-once sender (our fleet)."""
        self.callback_failures: list[tuple[str, str]] = []  # (url, reason)
        self.training_images: dict[int, list[tuple[str, bytes, str]]] = {}
        self.tick_errors: list[str] = []  # exceptions in the training clock (should stay empty)
        self.delayed_peak = 0  # most `delay_next` requests open at once
        # Internals.
        self._lock = threading.RLock()
        self._next_id = 1000
        self._injections: list[_Injection] = []
        self._held = False
        self._delayed_now = 0
        self._prompt_error: str | None = None
        self._held_prompt_words: str | None = None
        self._tune_clock: dict[int, float] = {}  # tune id -> monotonic start of training
        self._prompt_clock: dict[int, float] = {}
        self._prompt_fate: dict[int, str | None] = {}  # user_error to end with, or None
        self._png_cache: dict[str, bytes] = {}
        self._inspections: dict[str | None, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        from tests.fakes.astria_packs import FakePacks  # it builds on this module

        self.packs = FakePacks(self)
        self.packs.add_default_gallery()
        self.app = Starlette(
            routes=[
                Route(
                    "/{path:path}",
                    self._dispatch,
                    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                )
            ]
        )
        self._server = ThreadedServer(
            self.app,
            "FakeAstria",
            host=host,
            port=port,
            graceful_shutdown_s=1,
            around=self._in_server_loop,
        )

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> FakeAstria:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._server.start()
        self.port = self._server.port
        self.url = self._server.url

    def stop(self) -> None:
        self._server.stop()

    @contextlib.asynccontextmanager
    async def _in_server_loop(self) -> AsyncIterator[None]:
        """The callback client and the training clock live on the server's own loop."""
        async with httpx.AsyncClient(timeout=5.0) as callback_http:
            self._callback_http = callback_http
            ticker = asyncio.create_task(self._ticker())
            try:
                yield
            finally:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
                for task in list(self._tasks):
                    task.cancel()

    # -- test controls ---------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_prefix: str,
        status: int,
        body: Any = None,
        retry_after: str | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` requests matching method (or "*") and path prefix get this reply.

        Any status works, including 2xx, to serve a crafted body through real HTTP.
        """
        if body is None:
            body = {"error": f"Injected failure ({status})"}
        with self._lock:
            self._injections.append(
                _Injection(method.upper(), path_prefix, times, status, body, retry_after)
            )

    def delay_next(self, method: str, path_prefix: str, seconds: float, times: int = 1) -> None:
        """The next matching requests wait `seconds` before being handled (timeouts)."""
        with self._lock:
            self._injections.append(_Injection(method.upper(), path_prefix, times, delay=seconds))

    def hold_training(self) -> None:
        """Tunes stay untrained (and their prompts queued) until release_training()."""
        self._held = True

    def release_training(self) -> None:
        self._held = False

    def hold_prompts_with(self, words: str | None) -> None:
        """Prompts whose text contains `words` stay queued until this is called with None
        (a slow GPU for some prompts of a pack: a restart in the middle of a shoot)."""
        self._held_prompt_words = words

    def fail_prompts_with(self, user_error: str | None) -> None:
        """Prompts created from now on end with this `user_error` and no images (None = succeed)."""
        self._prompt_error = user_error

    def drop_unfinished_prompts(self) -> None:
        """Forget every prompt still queued, as if never created: a benchmark starts each of
        its measurements from the same state instead of one that grows run after run."""
        with self._lock:
            for prompt_id in [p["id"] for p in self.prompts.values() if not p["trained_at"]]:
                self._drop_prompt(prompt_id)

    def set_inspection(self, attributes: dict[str, Any], photo: bytes | None = None) -> None:
        """`POST /images/inspect` answers with INSPECT_DEFAULT updated by `attributes`: for
        this photo's bytes only, or (photo None) for every photo without its own answer."""
        with self._lock:
            self._inspections[None if photo is None else _sha(photo)] = dict(attributes)

    def find_requests(self, method: str, path_prefix: str = "/") -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.method == method.upper() and r.path.startswith(path_prefix)
            ]

    def add_tune(self, title: str, name: str = "man", *, trained: bool = True) -> dict[str, Any]:
        """Put a tune straight into the state (no request, no callback): for bulk setups."""
        with self._lock:
            tune = self._new_tune(
                {"title": title, "name": name, "base_tune_id": 666678, "model_type": "pti"}, []
            )
            if trained:
                self._finish_training(tune, _now(), notify=False)
            return tune

    def add_prompt(
        self, tune_id: int, text: str = "ohwx man", *, num_images: int = 1, done: bool = True
    ) -> dict[str, Any]:
        """Put a prompt straight into the state; `done` gives it images at once (no callback)."""
        with self._lock:
            record = RecordedRequest("POST", f"/tunes/{tune_id}/prompts", {}, {})
            record.form = {
                "prompt[text]": [text],
                "prompt[num_images]": [str(num_images)],
                "prompt[super_resolution]": ["true"],
            }
            _, prompt = self._create_prompt(tune_id, record)
            if done:
                self._finish_prompt(prompt, _now(), None, notify=False)
            return prompt

    # -- HTTP ------------------------------------------------------------------------

    async def _dispatch(self, request: Request) -> Response:
        path = request.url.path
        if path.endswith(".json"):
            path = path[: -len(".json")]
        path = path.rstrip("/") or "/"
        method = request.method
        record = RecordedRequest(
            method=method,
            path=path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
        )
        try:
            await self._read_body(request, record)
        except Exception as exc:
            return JSONResponse({"error": f"Unreadable body: {exc}"}, status_code=400)
        with self._lock:
            self.requests.append(record)
            injection = self._take_injection(method, path)
        if injection is not None and injection.delay:
            await self._delay(injection.delay)
        elif injection is not None:
            headers = {"Retry-After": injection.retry_after} if injection.retry_after else {}
            return JSONResponse(injection.body, status_code=injection.status, headers=headers)

        is_file = path.startswith("/files/")
        if (not is_file or self.files_require_auth) and not self._authorized(record):
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        try:
            if is_file:
                return self._serve_file(path[len("/files/") :])
            with self._lock:
                status, body = self._route(method, path, record)
        except _HttpError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        if body is NO_CONTENT:
            return Response(status_code=status)
        return JSONResponse(body, status_code=status)

    async def _delay(self, seconds: float) -> None:
        """Answer late, counting how many delayed requests the client keeps open at once."""
        with self._lock:
            self._delayed_now += 1
            self.delayed_peak = max(self.delayed_peak, self._delayed_now)
        try:
            await asyncio.sleep(seconds)
        finally:
            with self._lock:
                self._delayed_now -= 1

    def _authorized(self, record: RecordedRequest) -> bool:
        return record.headers.get("authorization") == f"Bearer {self.api_key}"

    def _take_injection(self, method: str, path: str) -> _Injection | None:
        for injection in self._injections:
            if injection.matches(method, path):
                injection.times -= 1
                if injection.times <= 0:
                    self._injections.remove(injection)
                return injection
        return None

    async def _read_body(self, request: Request, record: RecordedRequest) -> None:
        if request.method not in ("POST", "PUT", "PATCH"):
            return
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            form = await request.form(max_part_size=50 * 1024 * 1024)
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    record.files.append((key, value.filename or "", await value.read()))
                    record.file_content_types.append(value.content_type or "")
                else:
                    record.form.setdefault(key, []).append(value)
            await form.close()
        else:
            raw = await request.body()
            if raw.strip():
                record.json = json.loads(raw)

    def _route(self, method: str, path: str, rec: RecordedRequest) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if (answer := self.packs.route(method, parts, rec)) is not None:
            return answer
        ids = [int(p) if p.isdigit() else None for p in parts]
        match (method, parts[0] if parts else "", len(parts)):
            case ("POST", "tunes", 1):
                return self._create_tune(rec)
            case ("GET", "tunes", 1):
                return 200, self._page(list(self.tunes.values()), rec.query, TUNE_OFFSET_CAP)
            case ("GET", "tunes", 2) if ids[1] is not None:
                return 200, self._tune(ids[1])
            case ("DELETE", "tunes", 2) if ids[1] is not None:
                self._delete_tune(ids[1])
                return 200, {}
            case ("POST", "tunes", 3) if ids[1] is not None and parts[2] == "prompts":
                return self._create_prompt(ids[1], rec)
            case ("GET", "tunes", 3) if ids[1] is not None and parts[2] == "prompts":
                tune_id = ids[1]
                if tune_id not in GALLERY_TUNE_IDS:
                    self._tune(tune_id)
                mine = [p for p in self.prompts.values() if p["tune_id"] == tune_id]
                return 200, self._page(mine, rec.query, PROMPT_OFFSET_CAP)
            case ("GET" | "DELETE", "tunes", 4) if ids[1] is not None and ids[3] is not None:
                prompt = self._prompt(ids[3])
                if prompt["tune_id"] != ids[1] or parts[2] != "prompts":
                    raise _HttpError(404, "Not found")
                return self._prompt_action(method, ids[3])
            case ("GET", "prompts", 1):
                prompts = list(self.prompts.values())
                if rec.query.get("tune_id", "").isdigit():
                    prompts = [p for p in prompts if p["tune_id"] == int(rec.query["tune_id"])]
                return 200, self._page(prompts, rec.query, PROMPT_OFFSET_CAP)
            case ("GET" | "DELETE", "prompts", 2) if ids[1] is not None:
                return self._prompt_action(method, ids[1])
            case ("POST", "images", 2) if parts[1] == "inspect":
                return self._inspect(rec)
        raise _HttpError(404, "Not found")

    def _prompt_action(self, method: str, prompt_id: int) -> tuple[int, Any]:
        prompt = self._prompt(prompt_id)
        if method == "GET":
            return 200, prompt
        self._drop_prompt(prompt_id)
        return 200, {"message": "Prompt successfully deleted"}

    def _page(self, items: list[dict[str, Any]], query: dict[str, str], cap: int) -> list[Any]:
        """Astria list semantics: id descending, `before_id`, `offset`, `limit` (20, max 120)."""
        limit = _int(query.get("limit"), "limit") or 20
        offset = _int(query.get("offset"), "offset") or 0
        before = _int(query.get("before_id"), "before_id")
        if offset > cap:
            raise _HttpError(400, f"offset must be at most {cap}; use before_id")
        ordered = sorted(items, key=lambda item: item["id"], reverse=True)
        if before is not None:
            ordered = [item for item in ordered if item["id"] < before]
        return ordered[offset : offset + max(1, min(limit, 120))]

    def _tune(self, tune_id: int) -> dict[str, Any]:
        if tune_id not in self.tunes:
            raise _HttpError(404, "Not found")
        return self.tunes[tune_id]

    def _prompt(self, prompt_id: int) -> dict[str, Any]:
        if prompt_id not in self.prompts:
            raise _HttpError(404, "Not found")
        return self.prompts[prompt_id]

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    @staticmethod
    def _params(root: str, rec: RecordedRequest) -> tuple[dict[str, Any], bool]:
        """Rails params under `root`: `root[key]`, `root[key][]`, `root[key][sub]` (one level
        of nesting: `tune[characteristics][eye_color]`) or JSON `{root: {...}}`."""
        params: dict[str, Any] = {}
        if isinstance(rec.json, dict) and isinstance(rec.json.get(root), dict):
            params.update(rec.json[root])
        pattern = re.compile(rf"^{root}\[([^\]]+)\](?:\[([^\]]*)\])?$")
        for key, values in rec.form.items():
            if not (m := pattern.match(key)):
                continue
            if m.group(2) is None:
                params[m.group(1)] = values[-1]
            elif m.group(2) == "":
                params[m.group(1)] = list(values)
            else:
                params.setdefault(m.group(1), {})[m.group(2)] = values[-1]
        has_files = any(pattern.match(f) and f.endswith("[]") for f, _, _ in rec.files)
        return params, has_files

    # -- images/inspect --------------------------------------------------------------

    def _inspect(self, rec: RecordedRequest) -> tuple[int, Any]:
        """Astria's inspect (reference D-inspect): multipart `name` + `file` (or `file_url`);
        answers the documented attribute object, canned (`set_inspection`)."""
        name = (rec.form.get("name") or [""])[-1].strip()
        if not name:
            raise _HttpError(422, "Name can't be blank")
        photos = [content for key, _, content in rec.files if key == "file"]
        if not photos and not (rec.form.get("file_url") or [""])[-1]:
            raise _HttpError(422, "File can't be blank")
        own = self._inspections.get(_sha(photos[0])) if photos else None
        answer = {**INSPECT_DEFAULT, "name": name}
        answer.update(own if own is not None else self._inspections.get(None, {}))
        return 200, answer

    # -- tunes -----------------------------------------------------------------------

    def _create_tune(self, rec: RecordedRequest) -> tuple[int, Any]:
        params, has_files = self._params("tune", rec)
        image_urls = params.get("image_urls") or []
        for key in ("title", "name"):
            if not str(params.get(key) or "").strip():
                raise _HttpError(422, f"{key.capitalize()} can't be blank")
        if not has_files and not image_urls:
            raise _HttpError(422, "Images can't be blank: send tune[images][] or image_urls")
        for tune in self.tunes.values():
            if tune["title"] == params["title"]:  # idempotency by title
                return 200, tune
        images = [
            (name, content, ctype)
            for (fld, name, content), ctype in zip(rec.files, rec.file_content_types, strict=True)
            if fld == "tune[images][]"
        ]
        tune = self._new_tune(params, images, image_urls)
        return 201, tune

    def _new_tune(
        self,
        params: dict[str, Any],
        images: list[tuple[str, bytes, str]],
        image_urls: list[str] | None = None,
    ) -> dict[str, Any]:
        tune_id = self._new_id()
        now = _now()
        base = _int(params.get("base_tune_id"), "base_tune_id")
        self.training_images[tune_id] = images
        orig = [f"{self.url}/files/orig/{tune_id}-{n}" for n in range(1, len(images) + 1)]
        tune = {
            "id": tune_id,
            "title": str(params["title"]),
            "name": str(params["name"]),
            "is_api": True,
            "token": params.get("token") or "ohwx",
            "eta": _ts(now + timedelta(seconds=self.train_seconds)),
            "callback": params.get("callback"),
            "trained_at": None,
            "started_training_at": None,
            "expires_at": None,
            "created_at": _ts(now),
            "updated_at": _ts(now),
            "model_type": params.get("model_type"),
            "base_tune_id": base,
            "branch": params.get("branch") or BRANCHES.get(base or 0, "sd15"),
            "args": None,
            "steps": _int(params.get("steps"), "steps"),
            "face_crop": _bool(params.get("face_crop")),
            "ckpt_url": None,
            "ckpt_urls": [],
            "url": f"{self.url}/tunes/{tune_id}.json",
            "orig_images": orig + list(image_urls or []),
        }
        self.tunes[tune_id] = tune
        return tune

    def _finish_training(self, tune: dict[str, Any], now: datetime, *, notify: bool) -> None:
        tune["started_training_at"] = tune["started_training_at"] or _ts(now)
        tune["trained_at"] = _ts(now)
        tune["expires_at"] = _ts(now + timedelta(days=30))
        tune["updated_at"] = _ts(now)
        if notify and tune.get("callback"):
            self._callback(tune["callback"], {"tune": dict(tune)})

    def _delete_tune(self, tune_id: int) -> None:
        self._tune(tune_id)
        del self.tunes[tune_id]
        self._tune_clock.pop(tune_id, None)
        self.training_images.pop(tune_id, None)
        for prompt_id in [p["id"] for p in self.prompts.values() if p["tune_id"] == tune_id]:
            self._drop_prompt(prompt_id)

    # -- prompts ---------------------------------------------------------------------

    def _create_prompt(self, tune_id: int, rec: RecordedRequest) -> tuple[int, Any]:
        if tune_id not in GALLERY_TUNE_IDS:
            self._tune(tune_id)
        p, _ = self._params("prompt", rec)
        text = str(p.get("text") or "")
        if not text.strip():
            raise _HttpError(422, "Text can't be blank")
        num_images = _int(p.get("num_images"), "num_images")
        num_images = 8 if num_images is None else num_images
        if not 1 <= num_images <= 8:
            raise _HttpError(422, "num_images must be between 1 and 8")
        loras = LORA_TAG.findall(text)
        if len(loras) > 1:
            raise _HttpError(422, "Cannot combine multiple LoRA+TI tunes in one prompt")
        if loras:
            lora_id = loras[0][0]
            if not lora_id.isdigit() or int(lora_id) not in self.tunes:
                raise _HttpError(422, f"LoRA tune {lora_id} not found")
        super_resolution = _bool(p.get("super_resolution"))
        inpaint_faces = _bool(p.get("inpaint_faces"))
        if inpaint_faces and not super_resolution:
            raise _HttpError(422, "inpaint_faces requires super_resolution")
        scheduler = p.get("scheduler") or None
        if scheduler is not None and scheduler not in SCHEDULERS:
            raise _HttpError(422, f"Scheduler {scheduler} is not supported")
        w, h = _int(p.get("w"), "w"), _int(p.get("h"), "h")
        for name, value in (("w", w), ("h", h)):
            if value is not None and (value <= 0 or value % 8):
                raise _HttpError(422, f"{name} must be a positive multiple of 8")
        cfg_scale = _float(p.get("cfg_scale"), "cfg_scale")
        prompt_id = self._new_id()
        now = _now()
        prompt = {
            "id": prompt_id,
            "callback": p.get("callback"),
            "trained_at": None,
            "started_training_at": None,
            "created_at": _ts(now),
            "updated_at": _ts(now),
            "tune_id": tune_id,
            "text": text,
            "negative_prompt": p.get("negative_prompt") or "",
            "cfg_scale": None if cfg_scale is None else str(cfg_scale),
            "steps": _int(p.get("steps"), "steps"),
            "seed": _int(p.get("seed"), "seed"),
            "super_resolution": bool(super_resolution),
            "inpaint_faces": bool(inpaint_faces),
            "face_correct": bool(_bool(p.get("face_correct"))),
            "hires_fix": bool(_bool(p.get("hires_fix"))),
            "scheduler": scheduler,
            "w": w,
            "h": h,
            "ar": "1:1",
            "num_images": num_images,
            "url": f"{self.url}/tunes/{tune_id}/prompts/{prompt_id}.json",
            "images": [],
            "user_error": None,
        }
        self.prompts[prompt_id] = prompt
        self._prompt_fate[prompt_id] = self._prompt_error
        return 201, prompt

    def _prompt_ready(self, prompt: dict[str, Any]) -> bool | None:
        """True when every tune it needs is trained; None when one of them is gone."""
        needed = [] if prompt["tune_id"] in GALLERY_TUNE_IDS else [prompt["tune_id"]]
        needed += [int(i) for i, _ in LORA_TAG.findall(prompt["text"]) if i.isdigit()]
        for tune_id in needed:
            tune = self.tunes.get(tune_id)
            if tune is None:
                return None
            if not tune["trained_at"]:
                return False
        return True

    def _drop_prompt(self, prompt_id: int) -> None:
        self.prompts.pop(prompt_id, None)
        self._prompt_clock.pop(prompt_id, None)
        self._prompt_fate.pop(prompt_id, None)

    # -- clock -----------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                with self._lock:
                    self._tick()
            except Exception as exc:  # keep the clock alive; tests see it in tick_errors
                self.tick_errors.append(repr(exc))

    def _tick(self) -> None:
        clock, now = time.monotonic(), _now()
        if not self._held:
            for tune in self.tunes.values():
                if tune["trained_at"]:
                    continue
                started = self._tune_clock.setdefault(tune["id"], clock)
                if not tune["started_training_at"]:
                    tune["started_training_at"] = tune["updated_at"] = _ts(now)
                if clock - started >= self.train_seconds:
                    self._finish_training(tune, now, notify=True)
        for prompt in self.prompts.values():
            if prompt["trained_at"] or prompt["user_error"]:
                continue
            ready = self._prompt_ready(prompt)
            held = self._held_prompt_words
            if ready is False or (held is not None and held in prompt["text"]):
                continue
            started = self._prompt_clock.setdefault(prompt["id"], clock)
            if not prompt["started_training_at"]:
                prompt["started_training_at"] = prompt["updated_at"] = _ts(now)
            if ready and clock - started < self.prompt_seconds:
                continue
            error = self._prompt_fate.get(prompt["id"])
            if ready is None:
                error = "The fine-tune used by this prompt was deleted"
            self._finish_prompt(prompt, now, error, notify=True)
        self.packs.after_tick()

    def _finish_prompt(
        self, prompt: dict[str, Any], now: datetime, error: str | None, *, notify: bool
    ) -> None:
        prompt["started_training_at"] = prompt["started_training_at"] or _ts(now)
        if error:
            prompt["user_error"] = error
        else:
            prompt["images"] = [
                f"{self.url}/files/{prompt['id']}-{n}.png"
                for n in range(1, prompt["num_images"] + 1)
            ]
            prompt["trained_at"] = _ts(now)
        prompt["updated_at"] = _ts(now)
        if notify and prompt.get("callback"):
            self._callback(prompt["callback"], {"prompt": dict(prompt)})

    def _callback(self, url: str, payload: dict[str, Any]) -> None:
        """POST once, in the background; a failure is recorded, never retried (as Astria)."""
        self.callbacks_sent.append((url, payload))
        task = asyncio.get_running_loop().create_task(self._post_callback(url, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post_callback(self, url: str, payload: dict[str, Any]) -> None:
        for _ in range(self.callback_repeats):
            try:
                response = await self._callback_http.post(url, json=payload)
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    continue
                reason = f"HTTP {response.status_code}"
            with self._lock:
                self.callback_failures.append((url, reason))

    # -- files -----------------------------------------------------------------------

    def _serve_file(self, name: str) -> Response:
        with self._lock:
            if m := re.fullmatch(r"orig/(\d+)-(\d+)", name):
                images = self.training_images.get(int(m.group(1))) or []
                index = int(m.group(2)) - 1
                if 0 <= index < len(images):
                    _, content, ctype = images[index]
                    return Response(content, media_type=ctype or "application/octet-stream")
                raise _HttpError(404, "Not found")
            m = re.fullmatch(r"(\d+)-(\d+)\.png", name)
            prompt = self.prompts.get(int(m.group(1))) if m else None
            if m is None or prompt is None or f"{self.url}/files/{name}" not in prompt["images"]:
                raise _HttpError(404, "Not found")
            if name not in self._png_cache:
                self._png_cache[name] = solid_png(self.image_size, name)
            return Response(self._png_cache[name], media_type="image/png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Astria API until killed.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="sd_test")
    parser.add_argument("--train-seconds", type=float, default=0.3)
    parser.add_argument("--prompt-seconds", type=float, default=0.2)
    parser.add_argument("--files-require-auth", action="store_true")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    fake = FakeAstria(
        args.api_key,
        args.train_seconds,
        args.prompt_seconds,
        host=args.host,
        port=args.port,
        files_require_auth=args.files_require_auth,
    )
    with fake:
        print(f"URL={fake.url}", flush=True)
        while not stop.wait(0.1):
            pass
    sys.stdout.flush()


if __name__ == "__main__":
    main()
