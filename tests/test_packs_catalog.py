"""The pack catalog: the shipped packs follow the SDXL prompt rules; pack files are validated
with errors that name the file and the field; ids are stable; an operator's folder adds and
overrides packs; an installed wheel carries the shipped files."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from backends.local.packs.catalog import (
    PROMPT_IDS,
    SHIPPED_DIR,
    CatalogError,
    load_catalog,
    load_pack_file,
)
from bot.core.prompts import SD15_EMBEDDING

ROOT = Path(__file__).resolve().parents[1]
MAX_WORDS = 18
"""The seed's advice: about 15 words; SDXL follows short prompts and CLIP reads 77 tokens."""
MAX_NEGATIVE_WORDS = 8
"""Short negatives: long ones dilute CLIP's window and mostly fight the LoRA."""
SHIPPED = load_catalog()

PACK = """
title = "Test pack"
[defaults]
num_images = 2
[[prompts.man]]
text = "ohwx man, portrait, soft light"
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def words(text: str) -> int:
    return len([w for w in text.split() if re.search(r"\w", w)])


# -- the shipped catalog -----------------------------------------------------------------


def test_at_least_eight_shipped_packs_with_the_themes_the_issue_names() -> None:
    slugs = {p.slug for p in SHIPPED.packs}
    assert len(slugs) >= 8
    for theme in ("corporate", "studio", "golden", "fashion", "travel", "cinematic", "black"):
        assert any(theme in s for s in slugs), theme
    assert "dating-profile" in slugs


def test_every_shipped_pack_serves_man_woman_person_with_20_to_40_images() -> None:
    for pack in SHIPPED.packs:
        assert {"man", "woman", "person"} <= set(pack.classes), pack.slug
        for class_name in pack.classes:
            assert 20 <= pack.num_images(class_name) <= 40, (pack.slug, class_name)
    assert any({"boy", "girl"} <= set(p.classes) for p in SHIPPED.packs)


@pytest.mark.parametrize(
    "prompt",
    [p for pack in SHIPPED.packs for prompts in pack.prompts.values() for p in prompts],
    ids=lambda p: f"{p.class_name}-{p.id}",
)
def test_shipped_prompt_follows_the_sdxl_rules(prompt) -> None:
    assert re.search(rf"\bohwx {prompt.class_name}\b", prompt.text), "subject missing"
    assert words(prompt.text) <= MAX_WORDS, prompt.text
    assert prompt.negative_prompt, "a short negative is part of the seed's recipe"
    assert words(prompt.negative_prompt) <= MAX_NEGATIVE_WORDS, prompt.negative_prompt
    for text in (prompt.text, prompt.negative_prompt):
        assert not SD15_EMBEDDING.search(text), f"SD1.5 embedding name in {text!r}"
        assert "<" not in text and "(" not in text, "no tags or A1111 weights"


def test_ids_are_stable_and_distinct() -> None:
    again = load_catalog()
    assert [p.id for p in again.packs] == [p.id for p in SHIPPED.packs]
    prompt_ids = [p.id for pack in SHIPPED.packs for ps in pack.prompts.values() for p in ps]
    assert len(prompt_ids) == len(set(prompt_ids))
    assert all(i in PROMPT_IDS for i in prompt_ids)
    first = SHIPPED.packs[0]
    assert SHIPPED.get(first.id) is SHIPPED.get(first.slug) is SHIPPED.get(str(first.id))
    prompt = first.prompts["man"][0]
    assert SHIPPED.prompt(prompt.id) == (first, prompt)


def test_the_wheel_carries_the_shipped_pack_files() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["backends.local.packs"]
    package_dir = SHIPPED_DIR.parent
    shipped = {p.relative_to(package_dir) for p in SHIPPED_DIR.glob("*.toml")}
    covered = {p.relative_to(package_dir) for g in patterns for p in package_dir.glob(g)}
    assert shipped and shipped <= covered


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "title = 'x'\n[[prompts.man]]\ntext = 'ohwx man'\nnum_images = 9",
            "prompts.man.0.num_images",
        ),
        ("title = 'x'\n[[prompts.man]]\ntext = 'ohwx man'\ncolour = 'red'", "prompts.man.0.colour"),
        ("title = 'x'\n[[prompts.man]]\ntext = 'ohwx man'\nnum_images = '4'", "num_images"),
        (
            "title = 'x'\n[[prompts.man]]\ntext = 'a portrait'",
            "must name the subject as 'ohwx man'",
        ),
        ("title = 'x'\n[[prompts.man]]\ntext = 'ohwx man'\nar = 'tall'", "unknown ar 'tall'"),
        ("title = 'x'\n[[prompts.man]]\ntext = 'ohwx man'\ninpaint_faces = true", "requires super"),
        ("title = 'x'\n[[prompts.man]]\ntext = '<lora:1:1> ohwx man'", "no <lora:...> tag"),
        ("title = 'x'\n[[prompts.Man]]\ntext = 'ohwx Man'", "prompts.Man: not a class name"),
        ("title = 'x'\nprompts = {}", "prompts: "),
        ("[[prompts.man]]\ntext = 'ohwx man'", "title: Field required"),
        ("title = 'x'\nslug = 'Bad Slug'\n[[prompts.man]]\ntext = 'ohwx man'", "slug"),
        ("title = 'x\n", "not a readable TOML file"),
    ],
)
def test_a_bad_pack_file_names_the_file_and_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, "broken.toml", text)
    with pytest.raises(CatalogError) as caught:
        load_pack_file(path)
    assert str(caught.value).startswith("broken.toml: ")
    assert message in str(caught.value)


def test_the_readme_example_pack_file_is_valid(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text().split("\n## Packs\n", 1)[1]
    [example] = re.findall(r"```toml\n(.*?)```", readme, re.DOTALL)
    pack = load_pack_file(write(tmp_path, "example.toml", example))
    assert (pack.id, pack.slug) == (201, "office-party")
    assert pack.num_images("man") == 4 and pack.num_images("woman") == 2


def test_defaults_apply_and_a_prompt_overrides_them(tmp_path: Path) -> None:
    pack = load_pack_file(write(tmp_path, "two.toml", PACK + "num_images = 3\n"))
    assert pack.slug == "two" and pack.title == "Test pack"
    assert pack.prompts["man"][0].num_images == 3
    pack = load_pack_file(write(tmp_path, "one.toml", PACK))
    assert pack.num_images("man") == 2 and pack.prompts["man"][0].strength == 1.0


def test_operator_folder_adds_packs_and_overrides_by_slug(tmp_path: Path) -> None:
    mine = tmp_path / "packs"
    write(mine, "extra.toml", PACK)
    override = 'slug = "corporate-headshots"\n' + PACK.replace("Test pack", "Our headshots")
    write(mine, "ours.toml", override)
    catalog = load_catalog(mine)

    shipped = SHIPPED.get("corporate-headshots")
    ours = catalog.get("corporate-headshots")
    assert ours.title == "Our headshots" and ours.classes == ("man",)
    assert ours.id == shipped.id  # an override keeps the shipped id, so clients' ids hold
    assert catalog.get("extra").title == "Test pack"
    assert len(catalog.packs) == len(SHIPPED.packs) + 1


def test_clashes_and_a_missing_folder_are_errors(tmp_path: Path) -> None:
    mine = tmp_path / "packs"
    write(mine, "a.toml", PACK + "\n")
    write(mine, "b.toml", 'slug = "a"\n' + PACK)
    with pytest.raises(CatalogError, match=r"b\.toml: slug 'a' is also used by a\.toml"):
        load_catalog(mine)
    (mine / "b.toml").write_text(f"id = {SHIPPED.packs[0].id}\n" + PACK)
    with pytest.raises(CatalogError, match=f"id {SHIPPED.packs[0].id} is also the id of"):
        load_catalog(mine)
    (mine / "b.toml").write_text(PACK + '[[prompts.man]]\ntext = "ohwx man, portrait, soft light"')
    with pytest.raises(CatalogError, match=r"prompt id \d+ is taken"):
        load_catalog(mine)
    with pytest.raises(CatalogError, match="is not a folder"):
        load_catalog(tmp_path / "nowhere")


def test_a_bad_operator_pack_stops_the_worker_config_with_one_line(tmp_path: Path) -> None:
    from backends.local.config import WorkerConfig

    mine = tmp_path / "packs"
    write(mine, "bad.toml", PACK.replace("num_images = 2", "num_images = 0"))
    env = {"DATA_DIR": str(tmp_path), "WORKER_PACKS_DIR": str(mine)}
    with pytest.raises(ValueError, match=r"bad\.toml: defaults\.num_images: Input should be"):
        WorkerConfig.from_env(env)
    env["WORKER_PACKS_DIR"] = str(tmp_path / "missing")
    with pytest.raises(ValueError, match="is not a folder"):
        WorkerConfig.from_env(env)
    assert WorkerConfig.from_env({"WORKER_FETCH_URLS": "1"}).fetch_urls is True
    with pytest.raises(ValueError, match="WORKER_FETCH_URLS"):
        WorkerConfig.from_env({"WORKER_FETCH_URLS": "maybe"})
