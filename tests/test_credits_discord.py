"""A paid bot in Discord, end to end against the fake Discord (REST and gateway): SKUs bought in
Discord's store become credits once and are consumed, also when bought while the bot was away;
/credits, /buy and /admin; refusals as the chat shows them."""

from __future__ import annotations

from collections.abc import Callable

from bot.config import Settings
from tests.fakes.astria_server import FakeAstria
from tests.fakes.discord_api import FakeDiscord, Json, user_payload
from tests.test_discord import (
    ALICE,
    ALICE_DM,
    CHANNEL,
    GUILD,
    MALLORY,
    option,
    running_bot,
    slash,
    train,
    wait_response,
)

CREDITS_SKU, OTHER_SKU = 555_000_000_000_000_001, 555_000_000_000_000_002
ADMIN = user_payload(310_000_000_000_000_009, "boss")
ADMIN_DM = 320_000_000_000_000_009


def paid_settings(make_settings: Callable[..., Settings], **overrides: object) -> Settings:
    values: dict[str, object] = {
        "discord_bot_token": "fake.discord.token",
        "credits": "on",
        "free_credits": 50,
        "discord_sku_credits": f"{CREDITS_SKU}:100",
        "admin_ids": f"discord:{ADMIN['id']}",
    }
    return make_settings(**{**values, **overrides})


def consumed(fake: FakeDiscord, entitlement: Json) -> bool:
    return bool(fake.entitlements[int(entitlement["id"])]["consumed"])


async def credits_shown(fake: FakeDiscord, user: Json, channel: int) -> str:
    asked = await slash(fake, "credits", [], user=user, channel_id=channel)
    shown = await wait_response(fake, asked, "balance")
    return shown.content


async def test_a_sku_bought_is_credited_once_and_consumed(
    fake_discord: FakeDiscord, make_settings: Callable[..., Settings]
) -> None:
    fake = fake_discord
    async with running_bot(paid_settings(make_settings)) as core:
        offer = await slash(fake, "buy", [], user=ALICE, channel_id=ALICE_DM)
        shown = await wait_response(fake, offer, "Buy credits")
        assert shown.premium_skus == [CREDITS_SKU] and shown.ephemeral

        bought = await fake.buy(ALICE, CREDITS_SKU)
        thanks = await fake.wait_for(
            lambda: fake.find_message(ALICE_DM, "Thank you!", after=bought)
        )
        assert thanks.content == "Thank you! 100 credits added; your balance is 150 credits."
        assert consumed(fake, bought)

        await fake.dispatch("ENTITLEMENT_CREATE", {**bought, "consumed": False})  # seen again
        other = await fake.buy(ALICE, OTHER_SKU)  # a SKU that is not sold for credits
        await fake.wait_for(lambda: len(fake.find("POST", "/consume")) == 2)
        assert not consumed(fake, other)  # not ours to consume
        shown_text = await credits_shown(fake, ALICE, ALICE_DM)
        assert "Your balance: 150 credits." in shown_text
        assert f"+100 bought (discord:{bought['id']})" in shown_text
        assert await core.service.credits.ledger.balance(f"discord:{ALICE['id']}") == 150
    assert [m.content for m in fake.messages_in(ALICE_DM)].count(thanks.content) == 1


async def test_a_purchase_made_while_the_bot_was_away_is_credited_at_connect(
    fake_discord: FakeDiscord, make_settings: Callable[..., Settings]
) -> None:
    fake = fake_discord
    bought = fake.entitlement(ALICE, CREDITS_SKU)  # no bot connected to hear of it
    settings = paid_settings(make_settings)
    for _ in range(2):  # the second start finds it consumed: nothing twice
        async with running_bot(settings) as core:
            await fake.wait_for(lambda: consumed(fake, bought))
            balance = await core.service.credits.ledger.balance(f"discord:{ALICE['id']}")
            assert balance == 150
    listed = fake.find("GET", "/entitlements")
    assert listed and listed[0].query["sku_ids"] == str(CREDITS_SKU)


async def test_refusals_and_admin_commands_in_discord(
    fake_discord: FakeDiscord, make_settings: Callable[..., Settings], fake_astria: FakeAstria
) -> None:
    fake = fake_discord
    async with running_bot(paid_settings(make_settings)):
        await train(fake)  # the 50 free credits
        asked = await slash(
            fake, "imagine", [option("prompt", "a castle")], user=ALICE, channel_id=CHANNEL,
            guild_id=GUILD,
        )  # fmt: skip
        refusal = await wait_response(fake, asked, "costs")
        assert refusal.content.startswith("A set of 4 images costs 4 credits; you have 0 credits.")
        assert fake_astria.prompts == {}

        not_admin = await slash(
            fake, "admin", [option("command", "stats")], user=MALLORY, channel_id=CHANNEL,
            guild_id=GUILD,
        )  # fmt: skip
        await wait_response(fake, not_admin, "for the bot's admins")
        in_guild = await slash(
            fake, "admin", [option("command", "stats")], user=ADMIN, channel_id=CHANNEL,
            guild_id=GUILD,
        )  # fmt: skip
        await wait_response(fake, in_guild, "only in a private chat")
        grant = await slash(
            fake, "admin", [option("command", f"grant {ALICE['id']} 8")], user=ADMIN,
            channel_id=ADMIN_DM,
        )  # fmt: skip
        granted = await wait_response(fake, grant, "Gave")
        assert (
            granted.content
            == f"Gave 8 credits to discord:{ALICE['id']}; their balance is 8 credits."
        )
        assert "Your balance: 8 credits." in await credits_shown(fake, ALICE, ALICE_DM)
    commands = {command["name"] for command in fake.synced_commands["global"]}
    assert {"credits", "buy", "admin"} <= commands
