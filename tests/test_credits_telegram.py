"""A paid bot in Telegram, end to end: the real PTB Application against the fake Bot API, with
the fake Astria behind it. Telegram Stars from /buy to the refund, duplicates and refusals,
plain text that asks before it spends, refusals and balances as the chat shows them, admin
commands, and 50 /imagine at once from several chats."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from bot.chat.base import Core
from bot.config import Settings
from bot.core.ledger import Entry
from tests.fakes.astria_server import FakeAstria
from tests.fakes.telegram_api import ApiCall, FakeTelegram, Users, buttons
from tests.test_telegram import ALICE, BOB, GROUP, method_in, running_bot, sent_text, train_model

ADMIN = 1009
PROMPTS = "/tunes/666678/prompts"


def telegram_settings(
    make_settings: Callable[..., Settings], fake: FakeTelegram, **overrides: object
) -> Settings:
    """A public bot on (fake) hosted Astria: credits on by default (CREDITS=auto)."""
    values: dict[str, object] = {
        "telegram_bot_token": fake.token,
        "telegram_api_url": fake.api_url,
        "telegram_file_url": fake.file_url,
        "credits": "auto",
        "free_credits": 50,
        "credit_packages": "60:150,150:350",
        "admin_ids": f"telegram:{ADMIN}",
        "limit_images_per_day": 0,
    }
    return make_settings(**{**values, **overrides})


@pytest.fixture
def paid_settings(make_settings: Callable[..., Settings], fake_tg: FakeTelegram) -> Settings:
    return telegram_settings(make_settings, fake_tg)


async def balance(core: Core, user_id: int) -> int:
    return await core.service.credits.ledger.balance(f"telegram:{user_id}")


async def answer(fake: FakeTelegram, chat_id: int, *words: str) -> str:
    return str((await fake.wait_for(sent_text(chat_id, *words))).params["text"])


async def buy(fake: FakeTelegram, users: Users, user_id: int, package: str) -> dict[str, Any]:
    """/buy, press a package: the invoice the bot sends (its sendInvoice parameters)."""
    users.message(user_id, text="/buy")
    offer = await fake.wait_for(lambda c: sent_text(user_id, "Telegram Stars")(c))
    invoices = len(fake.find("sendInvoice", user_id))
    users.press(user_id, offer.result, buttons(offer.params)[package])
    await fake.wait_for(lambda c: len(fake.find("sendInvoice", user_id)) > invoices)
    return fake.find("sendInvoice", user_id)[-1].params


async def bought(fake: FakeTelegram, users: Users, user_id: int, package: str) -> str:
    """Buy a package and pay it; the charge id, once the bot said thanks."""
    charge = await users.pay(user_id, await buy(fake, users, user_id, package))
    await answer(fake, user_id, "Thank you!")
    assert charge is not None
    return charge


async def test_stars_from_buy_to_credits_and_a_duplicate_credits_once(
    fake_tg: FakeTelegram,
    users: Users,
    paid_settings: Settings,
) -> None:
    assert paid_settings.credits_enabled
    async with running_bot(paid_settings) as core:
        invoice = await buy(fake_tg, users, ALICE, "60 credits for 150 ⭐")
        assert invoice["currency"] == "XTR" and "provider_token" not in invoice
        assert invoice["prices"] == [{"label": "60 credits", "amount": 150}]
        assert invoice["title"] == "60 credits"
        charge = await users.pay(ALICE, invoice)
        assert charge is not None
        thanks = await answer(fake_tg, ALICE, "Thank you!")
        assert thanks == "Thank you! 60 credits added; your balance is 110 credits."

        users.successful_payment(ALICE, invoice["payload"], 150, charge_id=charge)  # again
        again = await answer(fake_tg, ALICE, "already")
        assert again == "This payment is in your balance already (60 credits)."
        assert await balance(core, ALICE) == 110

        users.message(ALICE, text="/credits")
        shown = await answer(fake_tg, ALICE, "Your balance")
        assert "Your balance: 110 credits." in shown
        assert f"+60 bought (telegram:{charge})" in shown
        assert "+50 welcome credits" in shown
    [answered] = fake_tg.checkout_answers.values()
    assert answered["ok"] is True


async def test_checkout_refuses_unknown_stale_and_mispriced_invoices_with_a_reason(
    fake_tg: FakeTelegram,
    users: Users,
    paid_settings: Settings,
) -> None:
    old = int(time.time()) - 2 * 24 * 3600
    cases = {
        "something-else": (150, "not one of mine"),
        f"credits:60:150:{old}": (150, "expired or its price changed"),  # two days old
        f"credits:999:1:{int(time.time())}": (1, "expired or its price changed"),  # not on sale
        f"credits:60:150:{int(time.time())}": (1, "not one of mine"),  # the wrong amount
    }
    async with running_bot(paid_settings) as core:
        queries = {
            users.pre_checkout(ALICE, payload, total): why
            for payload, (total, why) in cases.items()
        }
        await fake_tg.wait_for(lambda c: len(fake_tg.checkout_answers) == len(cases))
        for query_id, why in queries.items():
            verdict = fake_tg.checkout_answers[query_id]
            assert verdict["ok"] is False and why in verdict["error_message"]
        assert await balance(core, ALICE) == 50


async def test_a_payment_that_matches_no_offer_is_refunded_at_once(
    fake_tg: FakeTelegram,
    users: Users,
    paid_settings: Settings,
) -> None:
    async with running_bot(paid_settings) as core:
        users.successful_payment(ALICE, "a-payload-of-someone-else", 75, charge_id="stxOdd")
        said = await answer(fake_tg, ALICE, "refunded")
        assert "your 75 Stars were refunded" in said
        assert await balance(core, ALICE) == 50
    assert fake_tg.charges["stxOdd"]["refunded"]


async def test_admin_refund_takes_the_credits_back_once(
    fake_tg: FakeTelegram,
    users: Users,
    paid_settings: Settings,
) -> None:
    async with running_bot(paid_settings) as core:
        charge = await bought(fake_tg, users, ALICE, "150 credits for 350 ⭐")
        assert await balance(core, ALICE) == 200

        users.message(ALICE, text=f"/refund telegram:{charge}")
        assert await answer(fake_tg, ALICE, "for the bot's admins") == (
            "That command is for the bot's admins."
        )
        users.message(ADMIN, GROUP, f"/refund telegram:{charge}")
        await answer(fake_tg, GROUP, "only in a private chat")
        users.message(ADMIN, text=f"/refund telegram:{charge}")
        done = await answer(fake_tg, ADMIN, "Refunded")
        assert done == (
            f"Refunded telegram:{charge} to telegram:{ALICE} and took back 150 credits; "
            "balance 50 credits."
        )
        assert fake_tg.charges[charge]["refunded"]
        users.message(ADMIN, text=f"/refund telegram:{charge}")
        assert "refunded already" in await answer(fake_tg, ADMIN, "refunded already")
        users.message(ADMIN, text="/refund telegram:no-such-charge")
        assert "No purchase has the reference" in await answer(fake_tg, ADMIN, "No purchase")
        assert await balance(core, ALICE) == 50
        [refund] = [e for e in await core.service.credits.ledger.movements(f"telegram:{ALICE}")
                    if e.kind == Entry.REFUND]  # fmt: skip
        assert refund.actor == f"telegram:{ADMIN}" and refund.amount == -150
    assert len(fake_tg.find("refundStarPayment")) == 1


async def test_a_refund_of_spent_credits_is_refused_and_nothing_moves(
    fake_tg: FakeTelegram,
    users: Users,
    paid_settings: Settings,
    fake_astria: FakeAstria,
) -> None:
    async with running_bot(paid_settings) as core:
        charge = await bought(fake_tg, users, ALICE, "60 credits for 150 ⭐")
        await train_model(fake_tg, users, ALICE)  # 50 of the 110
        users.message(ALICE, text="/imagine astronaut")  # 4 more: 56 left of the 60 bought
        await fake_tg.wait_for(method_in("sendMediaGroup", ALICE))
        users.message(ADMIN, text=f"/refund telegram:{charge}")
        said = await answer(fake_tg, ADMIN, "Nothing was refunded")
        assert said.startswith(f"telegram:{ALICE} has only 56 credits of the 60 credits bought")
        assert await balance(core, ALICE) == 56
    assert not fake_tg.find("refundStarPayment")
    assert not fake_tg.charges[charge]["refunded"]


# -- spending ----------------------------------------------------------------------------------


async def test_plain_text_asks_first_and_the_button_makes_it(
    fake_tg: FakeTelegram,
    users: Users,
    paid_settings: Settings,
    fake_astria: FakeAstria,
) -> None:
    async with running_bot(paid_settings) as core:
        await train_model(fake_tg, users, ALICE)
        users.message(ALICE, text="clear")
        preview = await fake_tg.wait_for(sent_text(ALICE, "Make 4 images"))
        assert preview.params["text"] == (
            "Make 4 images of “clear” with man #1? It costs 4 credits; you have 0 credits."
        )
        [(label, data)] = buttons(preview.params).items()
        assert label == "✨ Make them (4 credits)"
        await asyncio.sleep(0.3)
        assert fake_astria.find_requests("POST", PROMPTS) == []  # nothing spent on its own

        users.press(ALICE, preview.result, data)
        refusal = await fake_tg.wait_for(
            lambda c: c.method == "answerCallbackQuery" and "credits" in c.params.get("text", "")
        )
        assert refusal.params["text"].startswith("A set of 4 images costs 4 credits; you have 0")
        users.message(ADMIN, text=f"/grant telegram:{ALICE} 4 a gift")
        assert await answer(fake_tg, ADMIN, "Gave") == (
            f"Gave 4 credits to telegram:{ALICE}; their balance is 4 credits."
        )
        users.press(ALICE, preview.result, data)
        album = await fake_tg.wait_for(method_in("sendMediaGroup", ALICE))
        assert album.params["media"][0]["caption"] == "clear"
        await core.tracker.wait_idle()
        assert await balance(core, ALICE) == 0
    assert len(fake_astria.find_requests("POST", PROMPTS)) == 1


async def test_refusals_say_the_price_and_the_limit(
    fake_tg: FakeTelegram, users: Users, make_settings: Callable[..., Settings],
    fake_astria: FakeAstria,
) -> None:  # fmt: skip
    settings = telegram_settings(
        make_settings, fake_tg, free_credits=10, price_training=10, limit_images_per_day=4
    )
    async with running_bot(settings) as core:
        users.message(BOB, text="/imagine a cat")
        assert "no model yet" in await answer(fake_tg, BOB, "no model yet")
        await train_model(fake_tg, users, ALICE)
        users.message(ALICE, text="/imagine a cat")
        said = await answer(fake_tg, ALICE, "costs")
        assert (
            said == "A set of 4 images costs 4 credits; you have 0 credits. /buy gets more credits."
        )
        await core.service.credits.ledger.grant(f"telegram:{ALICE}", 20, actor="test", note=None)
        users.message(ALICE, GROUP, "/imagine a dog")
        await fake_tg.wait_for(method_in("sendMediaGroup", GROUP))
        users.message(ALICE, GROUP, "/imagine a bird")
        limit = await answer(fake_tg, GROUP, "a day")
        assert "the limit is 4 a day and you have made 4" in limit
        assert "It resets at 00:00 UTC, in " in limit
        assert await balance(core, ALICE) == 16


async def test_fifty_imagines_at_once_from_four_chats_make_exactly_the_sets_paid_for(
    fake_tg: FakeTelegram, users: Users, make_settings: Callable[..., Settings],
    fake_astria: FakeAstria,
) -> None:  # fmt: skip
    """Credits for 10 sets of 4 images; 50 /imagine arrive together from the DM and three
    groups (chats are handled side by side). Exactly 10 sets are made; the balance ends at 0."""
    settings = telegram_settings(make_settings, fake_tg, limit_running_prompts=0)
    async with running_bot(settings) as core:
        await train_model(fake_tg, users, ALICE)
        await core.service.credits.ledger.grant(f"telegram:{ALICE}", 40, actor="test", note=None)
        chats = [ALICE, GROUP, GROUP - 1, GROUP - 2]
        for n in range(50):
            users.message(ALICE, chats[n % 4], f"/imagine astronaut {n}")

        def replies() -> list[ApiCall]:
            said = [(c, c.params["text"]) for c in fake_tg.find("sendMessage")]
            return [c for c, words in said if "costs 4 credits" in words]

        await fake_tg.wait_for(lambda c: len(replies()) >= 40, within=30)
        for _ in range(200):
            if not core.tracker.has_jobs():
                break
            await core.tracker.wait_idle()
        assert await balance(core, ALICE) == 0
        albums = [c for c in fake_tg.find("sendMediaGroup") if c.chat_id in chats]
        assert len(albums) == 10
    assert len(fake_astria.find_requests("POST", PROMPTS)) == 10


# -- admins ------------------------------------------------------------------------------------


async def test_admin_commands_and_their_bad_input(
    fake_tg: FakeTelegram,
    users: Users,
    paid_settings: Settings,
    fake_astria: FakeAstria,
) -> None:
    async with running_bot(paid_settings) as core:
        await train_model(fake_tg, users, ALICE)
        fake_astria.prompt_seconds = 3600
        users.message(ALICE, text="/grant telegram:1001 5")
        await answer(fake_tg, ALICE, "for the bot's admins")

        cases = [
            (f"/grant telegram:{ALICE} -5", "a whole number from 1 to 100000"),
            (f"/grant telegram:{ALICE} 1000000", "a whole number from 1 to 100000"),
            ("/grant telegram:424242 5", "I don't know telegram:424242"),
            ("/grant nobody 5", "“nobody” is not a user"),
            (f"/take telegram:{ALICE} 9", "has only 0 credits"),
            (f"/ban telegram:{ADMIN}", "is an admin"),
            (f"/unban telegram:{ALICE}", "is not banned"),
            ("/admin", "Admin commands:"),
        ]
        for line, expected in cases:
            users.message(ADMIN, text=line)
            await answer(fake_tg, ADMIN, expected)
        assert await balance(core, ALICE) == 0

        users.message(ADMIN, text=f"/grant {ALICE} 8 thanks for the bug report")
        await answer(fake_tg, ADMIN, "their balance is 8 credits")
        users.message(ALICE, text="/imagine a knight")
        await fake_tg.wait_for(sent_text(ALICE, "Queued"))
        users.message(ADMIN, text=f"/ban telegram:{ALICE} spam")
        banned = await answer(fake_tg, ADMIN, "Banned")
        assert banned == f"Banned telegram:{ALICE}. Cancelled: image #1."
        assert await balance(core, ALICE) == 8  # the hold came back
        users.message(ALICE, text="/imagine again")
        assert await answer(fake_tg, ALICE, "blocked") == (
            "Sorry, you are blocked from using this bot."
        )
        users.message(ADMIN, text=f"/ban telegram:{ALICE}")
        await answer(fake_tg, ADMIN, "banned already")

        users.message(ADMIN, text=f"/user telegram:{ALICE}")
        card = await answer(fake_tg, ADMIN, "user #")
        assert f"telegram:{ALICE}: user #1" in card and "Balance: 8 credits." in card
        assert "Banned since" in card and f"by telegram:{ADMIN}" in card
        assert "+8 from the bot's operator" in card
        users.message(ADMIN, text="/stats")
        stats = await answer(fake_tg, ADMIN, "Users:")
        assert "Users: 2 (2 new today)." in stats
        assert "Trainings: 1 today, 1 in all" in stats
        assert "spent: 50 today, 50 in all; given by admins: 8" in stats

        users.message(ADMIN, text=f"/unban telegram:{ALICE}")
        await answer(fake_tg, ADMIN, "Unbanned")
        users.message(ALICE, text="/credits")
        await answer(fake_tg, ALICE, "Your balance: 8 credits.")
        log = await core.store.fetch("SELECT actor, action, target FROM admin_log ORDER BY id")
        assert [tuple(row) for row in log] == [
            (f"telegram:{ADMIN}", "grant", f"telegram:{ALICE}"),
            (f"telegram:{ADMIN}", "ban", f"telegram:{ALICE}"),
            (f"telegram:{ADMIN}", "unban", f"telegram:{ALICE}"),
        ]


async def test_a_banned_user_can_neither_check_out_nor_keep_a_payment(
    fake_tg: FakeTelegram, users: Users, paid_settings: Settings
) -> None:
    async with running_bot(paid_settings) as core:
        users.message(BOB, text="/credits")
        await answer(fake_tg, BOB, "Your balance: 50 credits.")
        invoice = await buy(fake_tg, users, BOB, "60 credits for 150 ⭐")
        users.message(ADMIN, text=f"/ban telegram:{BOB}")
        await answer(fake_tg, ADMIN, "Banned")
        assert await users.pay(BOB, invoice) is None  # refused at checkout
        [verdict] = fake_tg.checkout_answers.values()
        assert verdict["error_message"] == "This account cannot buy credits here."
        # A payment that got through before the ban (or any other way) is given back.
        users.successful_payment(BOB, invoice["payload"], 150, charge_id="stxLate")
        said = await answer(fake_tg, BOB, "refunded")
        assert said == "This account cannot buy credits here, so your 150 Stars were refunded."
        assert fake_tg.charges["stxLate"]["refunded"]
        assert await balance(core, BOB) == 50
