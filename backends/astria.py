"""Async client of the Astria API: the hosted service or our own Astria-compatible worker.

One client drives both backends (docs/architecture.md §2), so it speaks only the documented API
(docs.astria.ai): Rails-style form fields (`tune[...]`, `prompt[...]`), JSON responses,
`Authorization: Bearer`.

Retry policy, and why:
- Reads and idempotent calls (GET, DELETE) retry 429, 5xx and network failures with
  exponential backoff and jitter (Retry-After wins when the server sends it): polling must
  ride out a flaky network.
- Creates (POST) are never retried here. A repeated create may train or bill twice; the
  caller decides, e.g. by re-sending the same tune title (Astria's idempotency key).

The API key is never logged, and it is only sent to the API's own origin: generated images
usually live on S3, which must never see our key.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urljoin

import httpx

from backends.base import (
    DEFAULT_TOKEN,
    AuthError,
    BackendError,
    Inspection,
    NotFoundError,
    Pack,
    PackCost,
    PackPrompt,
    PackRun,
    PackRunRequest,
    Prompt,
    PromptRequest,
    RateLimitError,
    ServerError,
    TrainingImage,
    Tune,
    TuneRequest,
    ValidationError,
)
from backends.findings import PERSON_CLASSES, Finding

log = logging.getLogger(__name__)

LIST_PAGE_SIZE = 120
"""Astria's maximum `limit`: fewest round trips when listing."""
MAX_BACKOFF_S = 60.0
"""Longest single wait inside one call; a longer Retry-After is handed to the caller instead."""
MAX_IN_FLIGHT = 16
"""Calls sent at once; more wait their turn here. httpx's pool re-scans every connection and
every waiting request on each hand-over, so at 200 calls in flight each cost ~3 ms of CPU
instead of ~0.6 ms (bench/telegram_load.py's burst), and Astria rate-limits heavy use anyway."""

Sleep = Callable[[float], Awaitable[Any]]


class AstriaClient:
    """Implements `backends.base.Backend` over HTTP. Use as `async with` or call `aclose()`."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str = "https://api.astria.ai",
        *,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_read_retries: int = 4,
        backoff_base_s: float = 1.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self._origin = _origin(httpx.URL(self.base_url))
        self._max_read_retries = max(0, max_read_retries)
        self._backoff_base_s = backoff_base_s
        self._sleep = sleep
        # Authorization is added per request (see _headers), never as a client default, so a
        # request to another host cannot carry it by accident.
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=MAX_IN_FLIGHT),
            transport=transport,
        )
        # With a custom transport (the in-process worker), other hosts (S3) must still be
        # reached over the network, so they get a plain client of their own, made on demand.
        self._timeout = self._http.timeout
        self._external: httpx.AsyncClient | None = None if transport else self._http

    def __repr__(self) -> str:  # no key in reprs, tracebacks or logs
        return f"AstriaClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> AstriaClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._external is not None and self._external is not self._http:
            await self._external.aclose()

    # -- tunes ---------------------------------------------------------------------------

    async def create_tune(self, request: TuneRequest) -> Tune:
        """POST /tunes as multipart (the photos are file parts). `title` is the idempotency key."""
        fields = _form(
            "tune",
            title=request.title,
            name=request.name,
            token=request.token,
            base_tune_id=request.base_tune_id,
            model_type=request.model_type,
            steps=request.steps,
            face_crop=request.face_crop,
            callback=request.callback,
        )
        fields.update(_characteristics(request.characteristics))
        files = [
            ("tune[images][]", (image.filename, image.content, image.content_type))
            for image in request.images
        ]
        response = await self._request("POST", "/tunes", data=fields, files=files or None)
        return parse_tune(_json_object(response))

    async def get_tune(self, tune_id: int) -> Tune:
        return parse_tune(_json_object(await self._request("GET", f"/tunes/{tune_id}")))

    async def list_tunes(self) -> list[Tune]:
        return [parse_tune(item) for item in await self._list("/tunes")]

    async def delete_tune(self, tune_id: int) -> None:
        """DELETE /tunes/:id. Raises NotFoundError if the backend no longer knows it."""
        await self._request("DELETE", f"/tunes/{tune_id}")

    # -- prompts -------------------------------------------------------------------------

    async def create_prompt(self, tune_id: int, request: PromptRequest) -> Prompt:
        """POST /tunes/:id/prompts. For a LoRA tune, `tune_id` is the base model (666678)."""
        fields = _form(
            "prompt",
            text=request.text,
            negative_prompt=request.negative_prompt,
            num_images=request.num_images,
            seed=request.seed,
            steps=request.steps,
            cfg_scale=request.cfg_scale,
            w=request.w,
            h=request.h,
            scheduler=request.scheduler,
            super_resolution=request.super_resolution,
            inpaint_faces=request.inpaint_faces,
            face_correct=request.face_correct,
            hires_fix=request.hires_fix,
            callback=request.callback,
        )
        response = await self._request("POST", f"/tunes/{tune_id}/prompts", data=fields)
        body = _json(response)
        if isinstance(body, list):  # seen from Astria (the official CLI tolerates it)
            body = body[0] if body else None
        if not isinstance(body, dict):
            raise ServerError("Astria returned no prompt object", status=response.status_code)
        return parse_prompt(body, tune_id)

    async def get_prompt(self, prompt_id: int, tune_id: int | None = None) -> Prompt:
        path = f"/tunes/{tune_id}/prompts/{prompt_id}" if tune_id else f"/prompts/{prompt_id}"
        return parse_prompt(_json_object(await self._request("GET", path)), tune_id)

    async def list_prompts(self, tune_id: int) -> list[Prompt]:
        return [parse_prompt(p, tune_id) for p in await self._list(f"/tunes/{tune_id}/prompts")]

    async def delete_prompt(self, prompt_id: int) -> None:
        await self._request("DELETE", f"/prompts/{prompt_id}")

    # -- packs and likes -----------------------------------------------------------------

    async def list_packs(self, *, gallery: bool = False, order: str | None = None) -> list[Pack]:
        """GET /packs (the account's own packs) or /gallery/packs (the public ones).

        `order="likes"`: most liked first. Our worker sorts; hosted Astria documents no sort
        parameter, so there the caller should sort by `Pack.likes` itself if it cares.
        """
        params = {"order": order} if order else None
        path = "/gallery/packs" if gallery else "/packs"
        body = _json(await self._request("GET", path, params=params))
        if not isinstance(body, list):
            raise ServerError(f"Astria returned no list for {path}")
        return [parse_pack(item) for item in body if isinstance(item, dict)]

    async def get_pack(self, pack: int | str) -> Pack:
        """GET /p/:id, or /p/:slug.json for a slug (`corporate-headshots`)."""
        path = f"/p/{pack}" if isinstance(pack, int) else f"/p/{quote(pack, safe='')}.json"
        return parse_pack(_json_object(await self._request("GET", path)))

    async def run_pack(self, pack_id: int, request: PackRunRequest) -> PackRun:
        """POST /p/:id/tunes: a new tune that runs the pack once trained, or (`tune_ids`) the
        pack's prompts on existing tunes. Not retried, like every create."""
        files = [
            ("tune[images][]", (image.filename, image.content, image.content_type))
            for image in request.images
        ]
        response = await self._request(
            "POST", f"/p/{pack_id}/tunes", data=_pack_run_form(request), files=files or None
        )
        return parse_pack_run(_json(response))

    async def like_prompt(self, prompt_id: int) -> None:
        """POST /prompts/:id/likes (201, no body). A pack prompt's like also counts for the
        pack's own prompt it was made from, which is how packs get ordered by likes."""
        await self._request("POST", f"/prompts/{prompt_id}/likes")

    async def unlike_prompt(self, prompt_id: int) -> None:
        """DELETE /prompts/:id/likes: takes the like back."""
        await self._request("DELETE", f"/prompts/{prompt_id}/likes")

    # -- photo inspection ----------------------------------------------------------------

    async def inspect_image(
        self, name: str, image: TrainingImage, *, hashes: Sequence[str] = ()
    ) -> Inspection:
        """POST /images/inspect (multipart `name`, `file`). `hashes`: the `phash` of the set's
        other photos, for our worker's near-duplicate check (Astria ignores the field)."""
        data: dict[str, Any] = {"name": name}
        if hashes:
            data["hashes[]"] = list(hashes)
        files = [("file", (image.filename, image.content, image.content_type))]
        response = await self._request("POST", "/images/inspect", data=data, files=files)
        return parse_inspection(_json_object(response), name)

    # -- files ---------------------------------------------------------------------------

    async def download(self, url: str) -> bytes:
        """GET an image by absolute URL or a path relative to the API.

        The key goes only to the API's own origin (our worker serves /files/ behind auth);
        S3 and any other host get an anonymous request. httpx drops Authorization itself if
        a redirect leaves the origin.
        """
        absolute = httpx.URL(urljoin(self.base_url + "/", url))
        same_origin = _origin(absolute) == self._origin
        if same_origin:
            http = self._http
        else:
            if self._external is None:
                self._external = httpx.AsyncClient(timeout=self._timeout)
            http = self._external
        response = await self._request(
            "GET", absolute, auth=same_origin, follow_redirects=True, accept="*/*", http=http
        )
        return response.content

    # -- plumbing ------------------------------------------------------------------------

    async def _list(self, path: str) -> list[dict[str, Any]]:
        """Follow `before_id` pages (newest first) until an empty or short page."""
        items: list[dict[str, Any]] = []
        params: dict[str, int] = {"limit": LIST_PAGE_SIZE}
        while True:
            page = _json(await self._request("GET", path, params=params))
            if not isinstance(page, list):
                raise ServerError(f"Astria returned no list for {path}")
            items.extend(item for item in page if isinstance(item, dict))
            ids = [item["id"] for item in page if isinstance(item, dict) and "id" in item]
            if len(page) < LIST_PAGE_SIZE or not ids:
                return items
            params = {"limit": LIST_PAGE_SIZE, "before_id": min(ids)}

    def _headers(self, auth: bool, accept: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if auth and self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        if accept:
            headers["Accept"] = accept
        return headers

    async def _request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        params: dict[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        files: list[Any] | None = None,
        auth: bool = True,
        follow_redirects: bool = False,
        accept: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> httpx.Response:
        """Send one call; retry it only if it is a read or idempotent (not POST)."""
        retries = self._max_read_retries if method in ("GET", "HEAD", "DELETE") else 0
        where = _loggable(url)
        for attempt in range(retries + 1):
            started = time.monotonic()
            try:
                async with self._in_flight:
                    client = http or self._http
                    request = client.build_request(
                        method,
                        url,
                        params=params,
                        data=data,
                        files=files,
                        headers=self._headers(auth, accept),
                    )
                    if files:
                        # A multipart body streams part by part, one socket write each (every
                        # `hashes[]` field is three): read whole, it goes in one. Issue 20:
                        # a photo's inspection took 2.6 ms of the bot's CPU instead of 0.85.
                        request.read()
                    response = await client.send(request, follow_redirects=follow_redirects)
            except httpx.TimeoutException as exc:
                error: BackendError = ServerError(
                    f"{method} {where} timed out ({type(exc).__name__})"
                )
                cause: Exception = exc
            except httpx.TransportError as exc:
                error = ServerError(f"{method} {where} failed: {type(exc).__name__}: {exc}")
                cause = exc
            else:
                log.debug(
                    "%s %s -> %s in %.2fs",
                    method,
                    where,
                    response.status_code,
                    time.monotonic() - started,
                )
                if response.is_success:
                    return response
                error, cause = error_from_response(response), None
            if not isinstance(error, RateLimitError | ServerError) or attempt >= retries:
                raise error from cause
            delay = self._backoff(attempt)
            if isinstance(error, RateLimitError) and error.retry_after is not None:
                if error.retry_after > MAX_BACKOFF_S:
                    raise error  # the caller's scheduler waits this long, not one call
                delay = error.retry_after
            log.warning(
                "%s %s: %s; retry %d/%d in %.1fs", method, where, error, attempt + 1, retries, delay
            )
            await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        """Exponential with "equal jitter": half fixed, half random, so clients spread out."""
        ceiling = min(MAX_BACKOFF_S, self._backoff_base_s * 2**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


# -- parsing (module level: the worker and tests reuse them) -------------------------------


def parse_tune(data: dict[str, Any]) -> Tune:
    """A Tune from Astria JSON. Failure: `error`/`user_error` text, else `failed_at`."""
    error = _text(data.get("error")) or _text(data.get("user_error"))
    if error is None and data.get("failed_at"):
        error = f"Training failed at {data['failed_at']}"
    return Tune(
        id=int(data["id"]),
        title=str(data.get("title") or ""),
        name=str(data.get("name") or ""),
        token=str(data.get("token") or DEFAULT_TOKEN),
        eta=parse_time(data.get("eta")),
        started_training_at=parse_time(data.get("started_training_at")),
        trained_at=parse_time(data.get("trained_at")),
        error=error,
        raw=data,
    )


def parse_prompt(data: dict[str, Any], tune_id: int | None = None) -> Prompt:
    """A Prompt from Astria JSON. Images may be URL strings or objects with a `url`."""
    images: list[str] = []
    for image in data.get("images") or ():
        url = image.get("url") if isinstance(image, dict) else image
        if isinstance(url, str) and url:
            images.append(url)
    return Prompt(
        id=int(data["id"]),
        tune_id=int(data.get("tune_id") or tune_id or 0),
        text=str(data.get("text") or ""),
        images=tuple(images),
        user_error=_text(data.get("user_error")),
        started_training_at=parse_time(data.get("started_training_at")),
        trained_at=parse_time(data.get("trained_at")),
        pack_id=_int_or_none(data.get("pack_id")),
        orig_prompt_id=_int_or_none(data.get("orig_prompt_id")),
        raw=data,
    )


def parse_pack(data: dict[str, Any]) -> Pack:
    """A Pack from Astria JSON: a list item (`cost_mc_hash`, no prompts) or `GET /p/:id`
    (`costs` per class, `prompts_per_class`). Anything malformed is left out, not fatal."""
    costs: dict[str, PackCost] = {}
    for name, cost in _mapping(data.get("costs")).items():
        if isinstance(cost, dict):
            costs[str(name)] = PackCost(
                num_images=_int_or_none(cost.get("num_images")),
                cost=_float_or_none(cost.get("cost")),
            )
    for name, millicents in _mapping(data.get("cost_mc_hash")).items():
        costs[str(name)] = replace(
            costs.get(str(name), PackCost()), cost_mc=_int_or_none(millicents)
        )
    prompts: dict[str, tuple[PackPrompt, ...]] = {}
    for name, items in _mapping(data.get("prompts_per_class")).items():
        if isinstance(items, list):
            prompts[str(name)] = tuple(
                _pack_prompt(item)
                for item in items
                if isinstance(item, dict) and _int_or_none(item.get("id")) is not None
            )
    pack_id = int(data["id"])
    return Pack(
        id=pack_id,
        slug=str(data.get("slug") or ""),
        title=str(data.get("title") or data.get("slug") or f"Pack {pack_id}"),
        description=_text(data.get("description")) or "",
        cover_url=_text(data.get("cover_url")),
        costs=costs,
        prompts_per_class=prompts,
        likes=_int_or_none(data.get("likes")) or 0,
        raw=data,
    )


ASTRIA_FLAGS = {
    "blurry": Finding.BLURRY,
    "includes_multiple_people": Finding.MULTIPLE_FACES,
    "full_body_image_or_longshot": Finding.FACE_TOO_SMALL,
    "wearing_sunglasses": Finding.SUNGLASSES,
    "wearing_hat": Finding.HAT,
    "funny_face": Finding.FUNNY_FACE,
}
"""Astria's inspect booleans that, when true, say something is wrong with the photo."""


def parse_inspection(data: dict[str, Any], requested: str) -> Inspection:
    """An Inspection from Astria's (or our worker's) answer for a photo of class `requested`.
    Astria's `name` empty or "NONE" means it saw no `requested`; another class is WRONG_CLASS."""
    findings = {finding for key, finding in ASTRIA_FLAGS.items() if data.get(key) is True}
    for value in data.get("findings") or ():
        with contextlib.suppress(ValueError):
            findings.add(Finding(value))
    seen = _text(data.get("name"))
    seen = None if seen is None or seen.upper() == "NONE" else seen.lower()
    if seen is None and requested.lower() in PERSON_CLASSES:
        findings.add(Finding.NO_FACE)
    elif seen is not None and seen != requested.lower():
        findings.add(Finding.WRONG_CLASS)
    attributes = {
        key: value.strip()
        for key, value in data.items()
        if key != "name"
        and isinstance(value, str)
        and value.strip()
        and value.strip().upper() != "NONE"
        and key not in ("phash", "sharpness_on", "detector")
    }
    return Inspection(
        name=seen,
        attributes=attributes,
        findings=frozenset(findings),
        faces=_number(data.get("faces"), int),
        face_fraction=_number(data.get("face_fraction"), float),
        sharpness=_number(data.get("sharpness"), float),
        phash=_text(data.get("phash")),
        near_duplicate_of=_number(data.get("near_duplicate_of"), int),
        raw=data,
    )


def parse_pack_run(body: Any) -> PackRun:
    """The answer to `POST /p/:id/tunes`, in any of the shapes seen: a tune object (perhaps
    with our worker's `prompts`), `{"message": "Prompts created", ...}`, or a bare list."""
    if isinstance(body, list):
        items = [item for item in body if isinstance(item, dict) and "id" in item]
        prompts = [item for item in items if "text" in item]
        tunes = [item for item in items if "text" not in item]
        body = {"tunes": tunes, "prompts": prompts}
    if not isinstance(body, dict):
        raise ServerError("Astria returned neither a tune nor a list of prompts for a pack run")
    tunes = [body] if "id" in body else _dicts(body.get("tunes"))
    return PackRun(
        tune=parse_tune(tunes[0]) if tunes else None,
        prompts=tuple(parse_prompt(p) for p in _dicts(body.get("prompts"))),
        raw=body,
    )


def _pack_prompt(item: dict[str, Any]) -> PackPrompt:
    images = tuple(i for i in item.get("images") or () if isinstance(i, str) and i)
    return PackPrompt(
        id=int(item["id"]),
        text=str(item.get("text") or ""),
        num_images=_int_or_none(item.get("num_images")),
        images=images,
        likes=_int_or_none(item.get("likes")) or 0,
    )


def _pack_run_form(request: PackRunRequest) -> dict[str, str | list[str]]:
    """Rails-style fields of `POST /p/:id/tunes`, as Astria's docs and CLI send them."""
    fields: dict[str, str | list[str]] = dict(
        _form(
            "tune",
            title=request.title,
            name=request.name,
            callback=request.callback,
            prompts_callback=request.prompts_callback,
        )
    )
    for key, values in (
        ("image_urls", request.image_urls),
        ("tune_ids", request.tune_ids),
        ("prompt_ids", request.prompt_ids),
    ):
        if values:
            fields[f"tune[{key}][]"] = [str(v) for v in values]
    fields.update(_characteristics(request.characteristics))
    fields.update(
        _form(
            "tune[prompt_attributes]",
            callback=request.prompt_callback,
            num_images=request.num_images,
            aspect_ratio=request.aspect_ratio,
            inpaint_faces=request.inpaint_faces,
        )
    )
    return fields


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    """`value` as `kind` when it is a JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return kind(value)


def parse_time(value: Any) -> datetime | None:
    """ISO-8601 (with `Z` or an offset) to an aware datetime; naive means UTC; junk is None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def error_from_response(response: httpx.Response) -> BackendError:
    """The typed error for a non-2xx response, carrying the server's own message."""
    status = response.status_code
    message = _error_message(response)
    if status in (401, 403):
        return AuthError(message, status=status)
    if status == 404:
        return NotFoundError(message, status=status)
    if status in (400, 422):
        return ValidationError(message, status=status)
    if status == 429:
        return RateLimitError(message, retry_after=_retry_after(response.headers))
    if status >= 500:
        return ServerError(message, status=status)
    return BackendError(message, status=status)  # 402 (balance), 409, ...: not retryable


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "message"):
            if isinstance(body.get(key), str) and body[key]:
                return body[key]
        if body:  # Rails style: {"name": ["can't be blank"], "images": ["are missing"]}
            parts = []
            for field, value in body.items():
                msgs = value if isinstance(value, list) else [value]
                parts.append(f"{field} {', '.join(str(m) for m in msgs)}")
            return "; ".join(parts)
    text = response.text.strip()
    return text[:500] if text else f"HTTP {response.status_code} {response.reason_phrase}"


def _retry_after(headers: httpx.Headers) -> float | None:
    """Retry-After as seconds: either a number or an HTTP date."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _form(root: str, **values: Any) -> dict[str, str]:
    """Rails-style form fields; booleans as "true"/"false", None left out."""
    fields: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        fields[f"{root}[{key}]"] = (
            ("true" if value else "false") if isinstance(value, bool) else str(value)
        )
    return fields


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise ServerError("Astria returned invalid JSON", status=response.status_code) from exc


def _json_object(response: httpx.Response) -> dict[str, Any]:
    body = _json(response)
    if not isinstance(body, dict):
        raise ServerError("Astria returned no JSON object", status=response.status_code)
    return body


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _float_or_none(value: Any) -> float | None:
    """A number from JSON that may hold one as a string ("3.0"); None for anything else."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int_or_none(value: Any) -> int | None:
    number = _float_or_none(value)
    return int(number) if number is not None and number.is_integer() else None


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host, url.port or default_port)


def _loggable(url: str | httpx.URL) -> str:
    """The URL without its query: presigned S3 URLs carry signatures there."""
    return str(httpx.URL(str(url)).copy_with(query=None))


def _characteristics(values: Mapping[str, str]) -> dict[str, str]:
    """`tune[characteristics][key]` form fields (a tune's, or a pack run's)."""
    return {f"tune[characteristics][{key}]": str(value) for key, value in values.items()}
