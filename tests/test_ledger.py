"""The ledger on a real SQLite database: its invariants under concurrency (also from a second
connection, as a second process would write), settlement exactly once, reconciliation after a
restart, and the limits that read it."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core import limits
from bot.core.ledger import Duplicate, Entry, Ledger, Overdrawn
from bot.core.limits import LimitReached, Limits
from bot.core.records import ChatTarget, GenerationState, JobKind, TuneState
from bot.core.store import Store

ANN = "telegram:42"
DM = ChatTarget("telegram", "42")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "photoshoot.sqlite3", tmp_path)
    yield store
    await store.close()


async def replayed_balance(store: Store, account: str) -> int:
    """The balance as the sum of the rows: what `balances` must always equal."""
    rows = await store.fetch(
        "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE account = ?", (account,)
    )
    return int(rows[0][0])


async def hold_generation(store: Store, ledger: Ledger, price: int, images: int = 4) -> int:
    """Record a generation whose hold commits with it (as the service does); its id."""
    user = await store.get_or_create_user("telegram", "42")
    tune = await store.create_tune(
        user.id, title=str(uuid.uuid4()), class_name="man", token="ohwx",
        label=None, photo_ids=[],
    )  # fmt: skip

    async def hold(db: object, generation_id: int) -> None:
        await ledger.hold(
            db,  # type: ignore[arg-type]
            ANN,
            price,
            units=images,
            job_kind=JobKind.GENERATION,
            job_id=generation_id,
        )

    generation, _ = await store.create_generation(
        user.id, tune_id=tune.id, prompt_typed="p", prompt_sent="p", negative_prompt="",
        options={"num_images": images}, seed=1, target=DM, also=hold,
    )  # fmt: skip
    return generation.id


async def test_a_hold_commits_with_its_job_or_neither_does(store: Store) -> None:
    ledger = Ledger(store, free_credits=6)
    first = await hold_generation(store, ledger, price=4)
    assert await ledger.balance(ANN) == 2
    with pytest.raises(Overdrawn) as refused:
        await hold_generation(store, ledger, price=4)
    assert (refused.value.wanted, refused.value.balance) == (4, 2)
    user = await store.get_or_create_user("telegram", "42")
    assert [g.id for g in await store.user_generations(user.id)] == [first]  # no orphan job
    assert await ledger.balance(ANN) == await replayed_balance(store, ANN) == 2


async def test_settling_twice_settles_once_and_release_gives_back(store: Store) -> None:
    ledger = Ledger(store, free_credits=10)
    captured = await hold_generation(store, ledger, price=4)
    released = await hold_generation(store, ledger, price=4)
    assert await ledger.settle(JobKind.GENERATION, captured, capture=True) == 0
    assert await ledger.settle(JobKind.GENERATION, captured, capture=False) == 0  # settled
    assert await ledger.settle(JobKind.GENERATION, released, capture=False) == 4
    assert await ledger.settle(JobKind.GENERATION, released, capture=True) == 0
    assert await ledger.balance(ANN) == 6
    totals = await ledger.totals()
    assert totals[Entry.CAPTURE] == 4 and totals[Entry.RELEASE] == 4


async def test_the_ledger_is_append_only_and_never_negative(store: Store) -> None:
    ledger = Ledger(store)
    await ledger.grant(ANN, 5, actor="telegram:1", note=None)
    async with store.transaction() as db:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await db.execute("UPDATE ledger SET amount = 500")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await db.execute("DELETE FROM ledger")
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            await db.execute("UPDATE balances SET credits = -1")
    with pytest.raises(Overdrawn):
        await ledger.take(ANN, 6, actor="telegram:1", note=None)
    assert await ledger.balance(ANN) == 5


async def test_welcome_credits_come_once_and_show_before_any_movement(store: Store) -> None:
    ledger = Ledger(store, free_credits=3)
    assert await ledger.balance(ANN) == 3  # nothing written yet
    await ledger.grant(ANN, 2, actor="telegram:1", note="hello")
    await ledger.grant(ANN, 2, actor="telegram:1", note=None)
    assert await ledger.balance(ANN) == 7
    kinds = [entry.kind for entry in reversed(await ledger.movements(ANN))]
    assert kinds == [Entry.WELCOME, Entry.GRANT, Entry.GRANT]


async def test_a_payment_is_credited_and_refunded_once(store: Store) -> None:
    ledger = Ledger(store)
    assert await ledger.purchase(ANN, 60, payment_ref="telegram:ch1", note="150 XTR") == 60
    with pytest.raises(Duplicate):
        await ledger.purchase(ANN, 60, payment_ref="telegram:ch1", note="150 XTR")
    found = await ledger.payment("telegram:ch1")
    assert found is not None and found[1] is None
    assert await ledger.refund(found[0], actor="telegram:1") == 0
    with pytest.raises(Duplicate):
        await ledger.refund(found[0], actor="telegram:1")
    _, refund = await ledger.payment("telegram:ch1") or (None, None)
    assert refund is not None and refund.amount == -60 and refund.actor == "telegram:1"


async def test_concurrent_holds_from_two_connections_never_overdraw(tmp_path: Path) -> None:
    """Two stores on one database file (two processes, in effect): 60 holds of 1 credit race
    for 25 credits. Exactly 25 succeed; the balance is 0 and equals the rows' sum."""
    path = tmp_path / "photoshoot.sqlite3"
    first, second = await Store.open(path, tmp_path), await Store.open(path, tmp_path)
    try:
        await Ledger(first).grant(ANN, 25, actor="telegram:1", note=None)

        async def try_hold(store: Store, job_id: int) -> bool:
            ledger = Ledger(store)
            try:
                async with store.transaction() as db:  # BEGIN IMMEDIATE
                    await ledger.hold(
                        db, ANN, 1, units=1, job_kind=JobKind.GENERATION, job_id=job_id
                    )
            except Overdrawn:
                return False
            return True

        results = await asyncio.gather(
            *(try_hold(first if n % 2 else second, n) for n in range(60))
        )
        assert sum(results) == 25
        assert await Ledger(first).balance(ANN) == 0 == await replayed_balance(first, ANN)
    finally:
        await first.close()
        await second.close()


async def test_reconcile_settles_what_ended_and_keeps_what_runs(store: Store) -> None:
    """After a restart: a delivered result is captured, a failed, cancelled or deleted job
    released, a running one (or a result not yet delivered) keeps its hold."""
    ledger = Ledger(store, free_credits=100)
    delivered, failed, cancelled, running, waiting = [
        await hold_generation(store, ledger, price=4) for _ in range(5)
    ]
    await store.update_generation(delivered, state=GenerationState.DONE)
    delivery = await store.get_delivery(JobKind.GENERATION, delivered)
    assert delivery is not None
    await store.mark_delivered(delivery.id)
    await store.update_generation(failed, state=GenerationState.FAILED)
    await store.update_generation(cancelled, state=GenerationState.CANCELLED)
    await store.update_generation(running, state=GenerationState.SUBMITTED)
    await store.update_generation(waiting, state=GenerationState.DONE)  # not delivered yet
    tune_user = await store.get_or_create_user("telegram", "42")
    tune = await store.create_tune(
        tune_user.id, title="gone", class_name="man", token="ohwx", label=None, photo_ids=[]
    )
    async with store.transaction() as db:
        await ledger.hold(db, ANN, 50, units=1, job_kind=JobKind.TUNE, job_id=tune.id)
    await store.update_tune(tune.id, state=TuneState.TRAINED)
    async with store.transaction() as db:  # the tune's row goes (as /delete would take it)
        await db.execute("DELETE FROM tunes WHERE id = ?", (tune.id,))

    assert await ledger.reconcile() == 4
    assert await ledger.reconcile() == 0  # nothing twice
    assert await ledger.balance(ANN) == 100 - 4 * 3  # delivered, running and waiting held
    held = {entry.job_id: entry.settled_as for entry in await ledger.movements(ANN, 50)
            if entry.kind == Entry.HOLD}  # fmt: skip
    assert held[delivered] == Entry.CAPTURE
    assert held[failed] == held[cancelled] == held[tune.id] == Entry.RELEASE
    assert held[running] is None and held[waiting] is None


OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["grant", "take", "hold", "capture", "release", "purchase"]),
        st.integers(min_value=0, max_value=12),
    ),
    max_size=25,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS)
def test_any_sequence_of_movements_keeps_the_invariants(operations: list[tuple[str, int]]) -> None:
    """Whatever happens in whatever order: the balance equals the sum of the rows and is never
    negative, each hold is settled at most once, each payment credited at most once."""

    async def run(folder: Path) -> None:
        store = await Store.open(folder / "db.sqlite3", folder)
        ledger = Ledger(store, free_credits=5)
        try:
            for step, (operation, number) in enumerate(operations):
                try:
                    if operation == "grant" and number:
                        await ledger.grant(ANN, number, actor="telegram:1", note=None)
                    elif operation == "take" and number:
                        await ledger.take(ANN, number, actor="telegram:1", note=None)
                    elif operation == "hold":
                        async with store.transaction() as db:
                            await ledger.hold(
                                db, ANN, number, units=1, job_kind=JobKind.GENERATION, job_id=step
                            )
                    elif operation in ("capture", "release"):
                        await ledger.settle(
                            JobKind.GENERATION, number, capture=operation == "capture"
                        )
                    elif operation == "purchase" and number:
                        await ledger.purchase(ANN, number, payment_ref=f"t:{number}", note="")
                except (Overdrawn, Duplicate):
                    pass
                balance = await ledger.balance(ANN)
                assert balance >= 0
                if await store.fetch("SELECT 1 FROM ledger"):
                    assert balance == await replayed_balance(store, ANN)
                else:  # nothing written yet: the welcome is still to come
                    assert balance == ledger.free_credits
            settled = await store.fetch(
                "SELECT hold_id, COUNT(*) FROM ledger WHERE hold_id IS NOT NULL GROUP BY hold_id"
            )
            assert all(count == 1 for _, count in settled)
            purchases = await store.fetch(
                "SELECT payment_ref, COUNT(*) FROM ledger WHERE kind = 'purchase'"
                " GROUP BY payment_ref"
            )
            assert all(count == 1 for _, count in purchases)
        finally:
            await store.close()

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(Path(folder)))


# -- limits ------------------------------------------------------------------------------------


async def test_limits_count_running_sets_and_the_days_images(store: Store) -> None:
    ledger = Ledger(store, free_credits=1000)
    rules = Limits(running_prompts=2, images_per_day=10, trainings_per_day=0)
    now = datetime(2026, 3, 1, 18, 30, tzinfo=UTC)
    first = await hold_generation(store, ledger, price=4)
    await hold_generation(store, ledger, price=4)
    async with store.transaction() as db:
        with pytest.raises(LimitReached, match="2 image sets on their way; 2 at a time"):
            await limits.check_generation(db, rules, ANN, 4, now)
    await ledger.settle(JobKind.GENERATION, first, capture=True)  # delivered: room again
    async with store.transaction() as db:
        with pytest.raises(LimitReached) as refused:
            await limits.check_generation(db, rules, ANN, 4, datetime.now(UTC))
    message = refused.value.message
    assert "the limit is 10 a day and you have made 8" in message
    assert "resets at 00:00 UTC" in message
    assert "5 h 30 min" in limits.resets_in(now)
    async with store.transaction() as db:  # a smaller set still fits
        await limits.check_generation(db, rules, ANN, 2, datetime.now(UTC))


async def test_a_shoot_counts_as_one_running_set_beside_a_set_of_the_same_id(
    store: Store,
) -> None:
    """Sets and shoots are counted in one read: a shoot's per-image holds are one job, and a
    shoot and a set that happen to share an id (two tables) are still two."""
    ledger = Ledger(store, free_credits=1000)
    generation = await hold_generation(store, ledger, price=4)
    async with store.transaction() as db:
        for _ in range(3):  # a shoot of 3 images: a hold each
            await ledger.hold(db, ANN, 1, units=1, job_kind=JobKind.SHOOT, job_id=generation)
    kinds = (JobKind.GENERATION, JobKind.SHOOT)
    async with store.transaction() as db:
        assert await Ledger.usage(db, ANN, kinds, datetime.now(UTC) - timedelta(hours=1)) == (2, 7)
        rules = Limits(running_prompts=2, images_per_day=0)
        with pytest.raises(LimitReached, match="2 image sets on their way; 2 at a time"):
            await limits.check_generation(db, rules, ANN, 4, datetime.now(UTC))


async def test_released_images_do_not_count_and_the_day_starts_at_midnight(store: Store) -> None:
    ledger = Ledger(store, free_credits=1000)
    rules = Limits(running_prompts=0, images_per_day=8)
    failed = await hold_generation(store, ledger, price=4)
    await hold_generation(store, ledger, price=4)
    await ledger.settle(JobKind.GENERATION, failed, capture=False)  # failed: cost nothing
    async with store.transaction() as db:
        await limits.check_generation(db, rules, ANN, 4, datetime.now(UTC))
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        await limits.check_generation(db, Limits(images_per_day=4), ANN, 4, tomorrow)


async def test_the_bot_wide_training_ceiling(store: Store) -> None:
    ledger = Ledger(store, free_credits=1000)
    rules = Limits(running_trainings=0, trainings_per_day=2)
    for job_id, account in ((1, ANN), (2, "discord:7")):
        async with store.transaction() as db:
            await limits.check_training(db, rules, account, datetime.now(UTC))
            await ledger.hold(db, account, 50, units=1, job_kind=JobKind.TUNE, job_id=job_id)
    async with store.transaction() as db:
        with pytest.raises(LimitReached, match="its 2 trainings for today"):
            await limits.check_training(db, rules, "telegram:99", datetime.now(UTC))
