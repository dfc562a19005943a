"""The packs and likes part of the fake Astria (reference/astria-api.md §2, Astria's pack docs).

- `GET /packs` (the account's own packs) and `GET /gallery/packs` (public ones): list items
  shaped as Astria's docs show them (`cost_mc_hash`, no prompts);
- `GET /p/:id` and `GET /p/:slug.json`: `costs` per class and `prompts_per_class`;
- `POST /p/:id/tunes`: a new tune whose pack prompts run once it is trained, or with
  `tune_ids` the pack's prompts on existing tunes, answered as Astria does in that case
  (`{"status": 201, "message": "Prompts created"}`, no prompt list: clients list the tune's
  prompts and recognise the pack's by `pack_id`);
- `POST`/`DELETE /prompts/:id/likes` (and `/like`, as Astria's curl example writes it): 201 with
  no body; a like on a pack prompt also counts for the pack's own prompt it was made from.

The fake starts with one public pack shaped like Astria's gallery pack 260 ("Corporate
Headshots": 28 images for a man, 35 for a woman); `add_pack` adds more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.fakes.astria_server import NO_CONTENT, RecordedRequest, _HttpError, _int, _now, _ts

if TYPE_CHECKING:
    from tests.fakes.astria_server import FakeAstria

PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass
class _Run:
    """One tune's prompts from one pack run, for the `prompts_callback`."""

    callback: str
    prompt_ids: list[int]
    sent: bool = False


@dataclass
class FakePacks:
    """Pack state and routes; the FakeAstria holds one and routes pack paths to it."""

    fake: FakeAstria
    packs: dict[int, dict[str, Any]] = field(default_factory=dict)
    likes: dict[int, int] = field(default_factory=dict)
    """Prompt id (a generated prompt or a pack's own prompt) -> likes."""
    liked: set[int] = field(default_factory=set)
    runs: list[_Run] = field(default_factory=list)

    def add_pack(
        self,
        slug: str,
        title: str,
        prompts: dict[str, list[str]],
        *,
        num_images: int = 4,
        costs: dict[str, int] | None = None,
        public: bool = True,
        pack_id: int | None = None,
    ) -> dict[str, Any]:
        """A pack with, per class, these prompt texts (each `num_images` images)."""
        pack_id = pack_id or self.fake._new_id()
        now = _ts(_now())
        templates = {
            name: [
                {"id": self.fake._new_id(), "text": text, "num_images": num_images, "images": []}
                for text in texts
            ]
            for name, texts in prompts.items()
        }
        pack = {
            "id": pack_id,
            "slug": slug,
            "title": title,
            "base_tune_id": 666678,
            "user_id": 1,
            "token": "ohwx",
            "model_type": "pti",
            "multiplier": 10,
            "cover_url": None,
            "logo": None,
            "created_at": now,
            "updated_at": now,
            "public_at": now if public else None,
            "unlisted_at": None,
            "_templates": templates,
            "_cost": costs or {name: 0 for name in prompts},
        }
        self.packs[pack_id] = pack
        return pack

    def add_default_gallery(self) -> None:
        """Astria's gallery pack 260, as its docs show it: 7 x 4 = 28 images for a man,
        7 x 5 = 35 for a woman (cents: 331 and 360)."""
        man = [f"ohwx man, corporate headshot {n}, office background" for n in range(1, 8)]
        woman = [f"ohwx woman, corporate headshot {n}, {{{{hair}}}}" for n in range(1, 8)]
        self.add_pack(
            "corporate-headshots",
            "Corporate Headshots",
            {"man": man},
            costs={"man": 331},
            pack_id=260,
        )
        pack = self.packs[260]
        pack["_templates"]["woman"] = [
            {"id": self.fake._new_id(), "text": text, "num_images": 5, "images": []}
            for text in woman
        ]
        pack["_cost"]["woman"] = 360

    # -- routes ----------------------------------------------------------------------

    def route(self, method: str, parts: list[str], rec: RecordedRequest) -> tuple[int, Any] | None:
        """The answer for a pack or like path; None when the path is not one of ours."""
        match (method, parts):
            case ("GET", ["packs"]):
                return 200, [self._list_item(p) for p in self._sorted() if p["user_id"] == 1]
            case ("GET", ["gallery", "packs"]):
                return 200, [self._list_item(p) for p in self._sorted() if p["public_at"]]
            case ("GET", ["p", key]):
                return 200, self._full(self._pack(key))
            case ("POST", ["p", key, "tunes"]):
                return self._run(self._pack(key), rec)
            case ("POST" | "DELETE", ["prompts", prompt_id, "likes" | "like"]):
                if not prompt_id.isdigit():
                    raise _HttpError(404, "Not found")
                self._like(int(prompt_id), method == "POST")
                return 201, NO_CONTENT
        return None

    def _sorted(self) -> list[dict[str, Any]]:
        return sorted(self.packs.values(), key=lambda p: p["id"], reverse=True)

    def _pack(self, key: str) -> dict[str, Any]:
        for pack in self.packs.values():
            if str(pack["id"]) == key or pack["slug"] == key:
                return pack
        raise _HttpError(404, "Not found")

    @staticmethod
    def _public(pack: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in pack.items() if not k.startswith("_")}

    def _list_item(self, pack: dict[str, Any]) -> dict[str, Any]:
        item = self._public(pack)
        for key in ("cover_url", "logo", "unlisted_at"):
            item.pop(key)
        item["cost_mc_hash"] = {name: cents * 1000 for name, cents in pack["_cost"].items()}
        return item

    def _full(self, pack: dict[str, Any]) -> dict[str, Any]:
        item = {
            k: v
            for k, v in self._public(pack).items()
            if k not in ("base_tune_id", "user_id", "token", "model_type", "multiplier")
        }
        item["costs"] = {
            name: {"cost": pack["_cost"].get(name, 0), "num_images": self._images(pack, name)}
            for name in pack["_templates"]
        }
        item["prompts_per_class"] = {
            name: [{"id": t["id"], "images": list(t["images"])} for t in templates]
            for name, templates in pack["_templates"].items()
        }
        return item

    @staticmethod
    def _images(pack: dict[str, Any], name: str) -> int:
        return sum(t["num_images"] for t in pack["_templates"][name])

    # -- runs ------------------------------------------------------------------------

    def _run(self, pack: dict[str, Any], rec: RecordedRequest) -> tuple[int, Any]:
        params, _ = self.fake._params("tune", rec)
        tune_ids = params.get("tune_ids") or []
        if not isinstance(tune_ids, list):
            tune_ids = [tune_ids]
        if tune_ids:
            tunes = [self.fake._tune(self._id(t)) for t in tune_ids]
            plans = [(tune, self._templates(pack, tune["name"], params)) for tune in tunes]
            for tune, templates in plans:
                self._queue(pack, tune, templates, params)
            return 201, {"status": 201, "message": "Prompts created"}
        name = str(params.get("name") or "")
        templates = self._templates(pack, name, params) if name else []
        status, tune = self.fake._create_tune(rec)  # 422 for a missing name, title or images
        if status == 201:
            self._queue(pack, tune, templates, params)
        return status, tune

    def _templates(
        self, pack: dict[str, Any], name: str, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if name not in pack["_templates"]:
            supported = ", ".join(sorted(pack["_templates"]))
            raise _HttpError(422, f"Class {name} is not supported by this pack ({supported})")
        templates = pack["_templates"][name]
        wanted = params.get("prompt_ids") or []
        if not wanted:
            return templates
        chosen = {self._id(p) for p in (wanted if isinstance(wanted, list) else [wanted])}
        unknown = chosen - {t["id"] for t in templates}
        if unknown:
            raise _HttpError(422, f"Prompts {sorted(unknown)} are not in this pack for {name}")
        return [t for t in templates if t["id"] in chosen]

    def _queue(
        self,
        pack: dict[str, Any],
        tune: dict[str, Any],
        templates: list[dict[str, Any]],
        params: dict[str, Any],
    ) -> None:
        characteristics = params.get("characteristics") or {}
        attributes = params.get("prompt_attributes") or {}
        created = []
        for template in templates:
            text = PLACEHOLDER.sub(
                lambda m: str(characteristics.get(m.group(1), "")), template["text"]
            )
            record = RecordedRequest("POST", f"/tunes/{tune['id']}/prompts", {}, {})
            record.form = {
                "prompt[text]": [text.replace("ohwx", tune["token"], 1)],
                "prompt[num_images]": [str(attributes.get("num_images") or template["num_images"])],
                "prompt[callback]": [attributes.get("callback") or ""],
            }
            _, prompt = self.fake._create_prompt(tune["id"], record)
            prompt["pack_id"] = pack["id"]
            prompt["orig_prompt_id"] = template["id"]
            created.append(prompt["id"])
        if params.get("prompts_callback"):
            self.runs.append(_Run(str(params["prompts_callback"]), created))

    def after_tick(self) -> None:
        """POST each run's prompts once, as one array, when all of them have ended."""
        for run in self.runs:
            if run.sent:
                continue
            prompts = [self.fake.prompts.get(i) for i in run.prompt_ids]
            if all(p is None or p["trained_at"] or p["user_error"] for p in prompts):
                run.sent = True
                self.fake._callback(run.callback, [dict(p) for p in prompts if p is not None])

    # -- likes -----------------------------------------------------------------------

    def _like(self, prompt_id: int, like: bool) -> None:
        prompt = self.fake.prompts.get(prompt_id)
        template = prompt_id in {
            t["id"] for p in self.packs.values() for ts in p["_templates"].values() for t in ts
        }
        if prompt is None and not template:
            raise _HttpError(404, "Not found")
        if like == (prompt_id in self.liked):
            return  # a like is a state, not a counter: repeats change nothing
        step = 1 if like else -1
        self.liked.symmetric_difference_update({prompt_id})
        targets = [prompt_id]
        if prompt is not None and prompt.get("orig_prompt_id"):
            targets.append(prompt["orig_prompt_id"])
        for target in targets:
            self.likes[target] = self.likes.get(target, 0) + step

    @staticmethod
    def _id(value: Any) -> int:
        number = _int(value, "id")
        if number is None:
            raise _HttpError(422, "ids must be integers")
        return number
