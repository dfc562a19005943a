"""Prompt safety (issue 15): the block list's rules, and a refused prompt on every chat holding
nothing and sending nothing to the image service."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.app import prompt_blocklist
from bot.config import ConfigError, Settings
from bot.core.safety import BlockList, BlockListError, PromptBlocked
from bot.core.texts import text
from tests.conftest import chat
from tests.fakes.astria_server import FakeAstria
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.telegram_api import FakeTelegram, Users
from tests.test_discord import ask_in_guild, wait_response
from tests.test_discord import running_bot as running_discord_bot
from tests.test_telegram import ALICE, sent_text, train_model
from tests.test_telegram import running_bot as running_telegram_bot

DEFAULT = BlockList.load()


@pytest.mark.parametrize(
    "prompt",
    [
        "nude child on a beach",
        "a sexy TEENAGER in lingerie",
        "Little girl, naked",
        "loli portrait",
        "a 12 year old in lingerie",
        "nsfw photo, 9yo",
        "rape scene",
    ],
)
def test_the_default_list_refuses_sexual_content_involving_minors(prompt: str) -> None:
    with pytest.raises(PromptBlocked) as refused:
        DEFAULT.check(prompt)
    assert refused.value.message == text("safety.blocked")


@pytest.mark.parametrize(
    "prompt",
    [
        "astronaut on the moon",
        "with my kids at a birthday party",
        "a girl at the beach at sunset",
        "sexy red sports car",
        "portrait in a 1920s suit, 35 years old",
        "drinking a grape juice",  # `rape` only as a whole word
    ],
)
def test_the_default_list_lets_ordinary_prompts_through(prompt: str) -> None:
    DEFAULT.check(prompt)
    assert DEFAULT.first_match(prompt) is None


def test_an_operator_file_with_groups_prefixes_and_regexes(tmp_path: Path) -> None:
    path = tmp_path / "rules.txt"
    path.write_text("# ours\n\nclown* & scar*\nre:\\bgore\\b\nbanana\n", encoding="utf-8")
    rules = BlockList.load(path)
    assert [rule.line for rule in rules.rules] == [3, 4, 5]
    assert rules.first_match("a scary  Clowns party").line == 3  # type: ignore[union-attr]
    assert rules.first_match("a clown at a party") is None  # every group must match
    assert rules.first_match("GORE everywhere").line == 4  # type: ignore[union-attr]
    assert rules.first_match("bananas") is None  # whole words unless `*`
    assert rules.first_match("nude child") is None  # the operator's file replaces the default


def test_a_malformed_rule_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.txt"
    path.write_text("fine\nre:(unclosed\n", encoding="utf-8")
    with pytest.raises(BlockListError, match="line 2"):
        BlockList.load(path)
    with pytest.raises(BlockListError, match="line 1"):
        BlockList.parse("a & \n")


def test_a_missing_file_stops_the_start(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(prompt_blocklist=Path("/nonexistent/rules.txt"))
    with pytest.raises(ConfigError, match="PROMPT_BLOCKLIST"):
        prompt_blocklist(settings)


def prompts_sent(fake_astria: FakeAstria) -> list[object]:
    return [r for r in fake_astria.find_requests("POST") if r.path.endswith("/prompts")]


async def test_console_refuses_before_anything_is_sent(
    make_settings: Callable[..., Settings],
    photo_dir: Path,
    fake_astria: FakeAstria,
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.txt"
    rules.write_text("moon\n", encoding="utf-8")
    output = await chat(
        make_settings(prompt_blocklist=rules),
        f"/photos {photo_dir}\n/train man\n/wait\n/imagine astronaut on the moon\n/wait\n"
        "/imagine astronaut on mars\n/wait\n",
    )
    assert "is ready" in output
    assert output.count(text("safety.blocked")) == 1
    [sent] = prompts_sent(fake_astria)
    assert "mars" in sent.form["prompt[text]"][0]  # type: ignore[attr-defined]


async def test_telegram_refuses_with_the_neutral_message(
    fake_tg: FakeTelegram, users: Users, tg_settings: Settings, fake_astria: FakeAstria
) -> None:
    async with running_telegram_bot(tg_settings) as core:
        await train_model(fake_tg, users, ALICE)
        users.message(ALICE, text="/imagine naked teen")
        await fake_tg.wait_for(sent_text(ALICE, text("safety.blocked")))
        user = await core.service.user("telegram", str(ALICE))
        assert await core.service.store.user_generations(user.id) == []
    assert prompts_sent(fake_astria) == []


async def test_discord_refuses_with_the_neutral_message(
    fake_discord: FakeDiscord, dc_settings: Settings, fake_astria: FakeAstria
) -> None:
    async with running_discord_bot(dc_settings):
        asked = await ask_in_guild(fake_discord, "nude child")
        await wait_response(fake_discord, asked, text("safety.blocked"))
    assert prompts_sent(fake_astria) == []
