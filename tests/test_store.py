"""The store: migrations on fresh and existing databases, and the queries restarts depend on."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from bot.config import ConfigError
from bot.core.ledger import Ledger
from bot.core.records import ChatTarget
from bot.core.schema import MIGRATIONS
from bot.core.store import Store

DM = ChatTarget("telegram", "42", is_private=True, reply_to_message_id="7")


async def test_fresh_database_gets_every_migration_and_wal(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "photoshoot.sqlite3", tmp_path)
    try:
        assert await store.schema_version() == len(MIGRATIONS)
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "photoshoot.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"users", "photos", "tunes", "generations", "deliveries", "actions"} <= tables


async def test_existing_version_1_database_is_upgraded_and_keeps_its_rows(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "photoshoot.sqlite3") as db:
        db.executescript(MIGRATIONS[0])
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO users (platform, platform_user_id, display_name, created_at)"
            " VALUES ('telegram', '42', 'Ann', '2026-01-01T00:00:00+00:00')"
        )
    store = await Store.open(tmp_path / "photoshoot.sqlite3", tmp_path)
    try:
        assert await store.schema_version() == len(MIGRATIONS) >= 2
        user = await store.get_or_create_user("telegram", "42")
        assert (user.id, user.display_name) == (1, "Ann")
        action = await store.create_action(user.id, "reroll", argument="3")
        assert await store.get_action(action.token) == action
    finally:
        await store.close()


async def test_reopening_applies_nothing_twice(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "photoshoot.sqlite3", tmp_path)
    user = await store.get_or_create_user("discord", "9", "Bo")
    await store.close()
    store = await Store.open(tmp_path / "photoshoot.sqlite3", tmp_path)
    try:
        assert await store.get_or_create_user("discord", "9") == user
    finally:
        await store.close()


async def test_tune_binds_pending_photos_and_delivery_is_claimed_once(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "photoshoot.sqlite3", tmp_path)
    try:
        user = await store.get_or_create_user("telegram", "42")
        other = await store.get_or_create_user("telegram", "43")
        mine = [
            await store.add_photo(
                user.id, sha256=f"h{i}", width=1024, height=1024, size_bytes=10, path=f"p{i}"
            )
            for i in range(4)
        ]
        foreign = await store.add_photo(
            other.id, sha256="x", width=1024, height=1024, size_bytes=10, path="x"
        )
        tune = await store.create_tune(
            user.id,
            title="t-1",
            class_name="man",
            token="ohwx",
            label=None,
            photo_ids=[p.id for p in mine] + [foreign.id],
        )
        assert [p.id for p in await store.tune_photos(tune.id)] == [p.id for p in mine]
        assert await store.pending_photos(user.id) == []
        assert await store.pending_photos(other.id) == [foreign]  # not taken by another's tune

        delivery = await store.add_delivery("tune", tune.id, DM)
        assert await store.undelivered() == [delivery]
        assert await store.mark_delivered(delivery.id) is True
        assert await store.mark_delivered(delivery.id) is False
        assert await store.undelivered() == []
    finally:
        await store.close()


async def test_delete_user_data_removes_rows_of_that_user_only(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "photoshoot.sqlite3", tmp_path)
    try:
        user = await store.get_or_create_user("telegram", "1")
        other = await store.get_or_create_user("telegram", "2")
        for owner in (user, other):
            tune = await store.create_tune(
                owner.id, title=f"t{owner.id}", class_name="man", token="ohwx", label=None,
                photo_ids=[],
            )  # fmt: skip
            await store.create_generation(
                owner.id, tune_id=tune.id, prompt_typed="a", prompt_sent="b", negative_prompt="",
                options={}, seed=1, target=DM,
            )  # fmt: skip
        await store.delete_user_data(user.id)
        assert await store.user_tunes(user.id) == []
        assert await store.user_generations(user.id) == []
        assert len(await store.user_generations(other.id)) == 1
        assert [d.job_id for d in await store.undelivered()] == [2]
    finally:
        await store.close()


async def test_concurrent_use_cases_each_commit_whole(tmp_path: Path) -> None:
    """Many handlers share one connection: a training binding its photos while others write
    (a burst of updates) must neither fail nor bind someone else's photos."""
    store = await Store.open(tmp_path / "photoshoot.sqlite3", tmp_path)
    try:
        users = [await store.get_or_create_user("telegram", str(n)) for n in range(30)]

        async def user_flow(user_id: int) -> tuple[int, set[int]]:
            photos = [
                await store.add_photo(
                    user_id,
                    sha256=f"{user_id}-{n}",
                    width=1024,
                    height=1024,
                    size_bytes=1,
                    path=f"{user_id}/{n}.jpg",
                )
                for n in range(4)
            ]
            await store.get_or_create_user("telegram", str(user_id), f"name {user_id}")
            tune = await store.create_tune(
                user_id, title=f"t{user_id}", class_name="man", token="ohwx", label=None,
                photo_ids=[p.id for p in photos],
            )  # fmt: skip
            await store.add_delivery("tune", tune.id, DM)
            await store.create_action(user_id, "reroll")
            return tune.id, {p.id for p in photos}

        results = await asyncio.gather(*(user_flow(u.id) for u in users))
        for user, (tune_id, photo_ids) in zip(users, results, strict=True):
            assert {p.id for p in await store.tune_photos(tune_id)} == photo_ids
            assert await store.pending_photos(user.id) == []
    finally:
        await store.close()


async def insert_action(db: aiosqlite.Connection, token: str, user_id: int) -> None:
    """A button's row written inside a transaction the test controls."""
    await db.execute(
        "INSERT INTO actions (token, user_id, kind, created_at) VALUES (?, ?, 'reroll', ?)",
        (token, user_id, "2026-01-01"),
    )


async def test_one_statement_writes_never_join_a_transaction_that_rolls_back(
    tmp_path: Path,
) -> None:
    """One-statement writes go without the write lock while no transaction holds it: those
    made before, during and after a transaction that fails must all stay, and none of the
    transaction's own writes."""
    store = await Store.open(tmp_path / "photoshoot.sqlite3", tmp_path)
    try:
        user = await store.get_or_create_user("telegram", "1")
        inside = asyncio.Event()

        async def failing_transaction() -> None:
            with contextlib.suppress(RuntimeError):
                async with store.transaction() as db:
                    await insert_action(db, "doomed", user.id)
                    inside.set()
                    for _ in range(20):  # others run meanwhile
                        await asyncio.sleep(0)
                    raise RuntimeError("the use case failed half-way")

        async def buttons() -> list[str]:
            tokens = [(await store.create_action(user.id, "reroll")).token]
            await inside.wait()
            for _ in range(10):
                tokens.append((await store.create_action(user.id, "reroll")).token)
            return tokens

        _, tokens = await asyncio.gather(failing_transaction(), buttons())
        tokens.append((await store.create_action(user.id, "reroll")).token)
        assert await store.get_action("doomed") is None
        assert all([await store.get_action(token) for token in tokens]) and len(tokens) == 12
    finally:
        await store.close()


@pytest.mark.parametrize("cancelled_at", ["begin", "body"])
async def test_a_cancelled_transaction_leaves_none_open(tmp_path: Path, cancelled_at: str) -> None:
    """A job's task is cancelled (/cancel, shutdown) wherever it is: also while it waits for
    its BEGIN's answer, which the database thread runs all the same. The next transaction
    must still begin, and the cancelled one's writes must be gone."""
    store = await Store.open(tmp_path / "photoshoot.sqlite3", tmp_path)
    try:
        user = await store.get_or_create_user("telegram", "1")
        wrote = asyncio.Event()

        async def cut_short() -> None:
            async with store.transaction() as db:
                await insert_action(db, "cut", user.id)
                wrote.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(cut_short())
        if cancelled_at == "begin":
            await asyncio.sleep(0)  # it took the lock and queued BEGIN, and awaits its answer
        else:
            await wrote.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        async with store.transaction() as db:
            await insert_action(db, "next", user.id)
        assert await store.get_action("cut") is None
        assert await store.get_action("next") is not None
    finally:
        await store.close()


async def test_a_failed_commit_leaves_no_transaction_open(tmp_path: Path) -> None:
    """A COMMIT can fail (here a foreign key checked at the end; on a server, a full disk):
    the transaction is rolled back, so the writes that follow it without the lock do not
    join it unseen, and the next transaction begins."""
    store = await Store.open(tmp_path / "photoshoot.sqlite3", tmp_path)
    try:
        user = await store.get_or_create_user("telegram", "1")
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            async with store.transaction() as db:
                await db.execute("PRAGMA defer_foreign_keys = ON")  # checked at COMMIT
                await insert_action(db, "orphan", user.id + 999)
        after = (await store.create_action(user.id, "reroll")).token  # without the lock
        async with store.transaction() as db:
            await insert_action(db, "next", user.id)
        assert await store.get_action("orphan") is None
        assert await store.get_action(after) is not None
        assert await store.get_action("next") is not None
    finally:
        await store.close()


async def test_users_read_from_memory_stay_true_to_every_write(tmp_path: Path) -> None:
    """Senders are kept in memory (every update asks for one); each write must show."""
    store = await Store.open(tmp_path / "photoshoot.sqlite3", tmp_path)
    try:
        ann = await store.get_or_create_user("telegram", "42", "Ann")
        assert await store.get_or_create_user("telegram", "42", "Ann") == ann
        renamed = await store.get_or_create_user("telegram", "42", "Ann B.")
        assert (renamed.id, renamed.display_name) == (ann.id, "Ann B.")
        assert await store.get_or_create_user("telegram", "42") == renamed
        tune = await store.create_tune(
            ann.id, title="t", class_name="man", token="ohwx", label=None, photo_ids=[]
        )
        await store.set_active_tune(ann.id, tune.id)
        assert (await store.get_or_create_user("telegram", "42")).active_tune_id == tune.id
        await store.delete_user_data(ann.id)
        again = await store.get_or_create_user("telegram", "42", "Ann B.")
        assert again.active_tune_id is None and await store.get_user(again.id) == again
    finally:
        await store.close()


async def test_a_rename_under_way_is_not_hidden_by_a_copy_read_meanwhile(tmp_path: Path) -> None:
    """Bob's write holds the lock; Ann's rename waits for it while another update of Ann
    reads her (old) row: once the rename commits, the new name must be what is read."""
    store = await Store.open(tmp_path / "photoshoot.sqlite3", tmp_path)
    try:
        await store.get_or_create_user("telegram", "42", "Old")
        bob = await store.get_or_create_user("telegram", "43", "Bob")
        await asyncio.gather(
            store.set_active_tune(bob.id, None),
            store.get_or_create_user("telegram", "42", "New"),
            store.get_or_create_user("telegram", "42"),
        )
        assert (await store.get_or_create_user("telegram", "42")).display_name == "New"
    finally:
        await store.close()


async def test_an_old_sqlite_is_refused_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(ConfigError, match=r"SQLite is 3\.31\.1; the bot needs 3\.35\.0"):
        await Store.open(tmp_path / "photoshoot.sqlite3", tmp_path)


def _label_behind_the_store(tmp_path: Path, label: str) -> None:
    """Another process changes every tune: what the store serves from memory does not show it."""
    with sqlite3.connect(tmp_path / "photoshoot.sqlite3") as db:
        db.execute("UPDATE tunes SET label = ?", (label,))


async def test_tunes_read_from_memory_per_user_and_dropped_on_each_write(tmp_path: Path) -> None:
    """Issue 20: a user's tunes are read once and kept; a write to one user's tunes (create,
    update, delete) makes the next read of that user's come from the database, and leaves the
    other users' copies alone."""
    store = await Store.open(tmp_path / "photoshoot.sqlite3", tmp_path)
    try:
        ann = await store.get_or_create_user("telegram", "1")
        bob = await store.get_or_create_user("telegram", "2")
        tunes = {}
        for owner in (ann, bob):
            tunes[owner.id] = await store.create_tune(
                owner.id, title=f"t{owner.id}", class_name="man", token="ohwx", label="first",
                photo_ids=[],
            )  # fmt: skip
        assert [t.label for t in await store.user_tunes(ann.id)] == ["first"]
        assert [t.label for t in await store.user_tunes(bob.id)] == ["first"]
        _label_behind_the_store(tmp_path, "second")
        assert [t.label for t in await store.user_tunes(ann.id)] == ["first"]  # from memory

        await store.update_tune(tunes[ann.id].id, state="training")
        assert [(t.label, t.state) for t in await store.user_tunes(ann.id)] == [
            ("second", "training")
        ]
        assert [t.label for t in await store.user_tunes(bob.id)] == ["first"]  # Bob's kept

        await store.create_tune(
            bob.id, title="t3", class_name="woman", token="ohwx", label=None, photo_ids=[]
        )
        assert [t.label for t in await store.user_tunes(bob.id)] == ["second", None]

        await store.delete_user_data(ann.id)
        assert await store.user_tunes(ann.id) == []
        assert len(await store.user_tunes(bob.id)) == 2
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def store_with_a_cached_tune(tmp_path: Path) -> AsyncIterator[tuple[Store, int]]:
    """A store whose user (Ann, `telegram:1`) has one tune labelled `first`, its list read
    once (so kept in memory); yields the store and Ann's id."""
    store = await Store.open(tmp_path / "photoshoot.sqlite3", tmp_path)
    try:
        ann = await store.get_or_create_user("telegram", "1")
        await store.create_tune(
            ann.id, title="t", class_name="man", token="ohwx", label="first", photo_ids=[]
        )
        assert [t.label for t in await store.user_tunes(ann.id)] == ["first"]
        yield store, ann.id
    finally:
        await store.close()


async def test_other_modules_writes_drop_every_cached_tune_list(tmp_path: Path) -> None:
    """`transaction()` (the ledger, bans) may write anything: no tune list outlives it."""
    async with store_with_a_cached_tune(tmp_path) as (store, ann):
        async with store.transaction() as db:
            await db.execute("UPDATE tunes SET label = 'changed'")
        assert [t.label for t in await store.user_tunes(ann)] == ["changed"]


async def test_the_ledgers_writes_keep_the_cached_tune_lists(tmp_path: Path) -> None:
    """The ledger writes on every job and never touches tunes: it says so, and the tune lists
    kept in memory outlive its writes (re-read after each, they were useless under load)."""
    async with store_with_a_cached_tune(tmp_path) as (store, ann):
        _label_behind_the_store(tmp_path, "second")
        await Ledger(store).grant("telegram:1", 5, actor="admin", note=None)
        assert [t.label for t in await store.user_tunes(ann)] == ["first"]  # from memory
        async with store.transaction() as db:  # a write that may touch anything
            await db.execute("UPDATE users SET language = 'de'")
        assert [t.label for t in await store.user_tunes(ann)] == ["second"]


async def test_get_user_follows_every_write_to_the_user(tmp_path: Path) -> None:
    """`get_user` answers from the senders kept in memory: the active model a /models
    button chose, or a /language choice, shows at once."""
    store = await Store.open(tmp_path / "photoshoot.sqlite3", tmp_path)
    try:
        ann = await store.get_or_create_user("telegram", "1", "Ann")
        tune = await store.create_tune(
            ann.id, title="t", class_name="man", token="ohwx", label=None, photo_ids=[]
        )
        assert await store.get_user(ann.id) == ann
        await store.set_active_tune(ann.id, tune.id)
        assert (await store.get_user(ann.id)).active_tune_id == tune.id  # type: ignore[union-attr]
        await store.find_user("telegram", "1")  # kept in memory again
        await store.set_language(ann.id, "de")
        assert (await store.get_user(ann.id)).language == "de"  # type: ignore[union-attr]
        await store.delete_user_data(ann.id)
        assert await store.get_user(ann.id) is None
    finally:
        await store.close()


async def test_queued_generations_come_with_their_queue_positions(tmp_path: Path) -> None:
    """/status in one trip: a user's unfinished generations, each with how many unfinished
    ones (anyone's) were asked for before it; finished ones are left out."""
    store = await Store.open(tmp_path / "photoshoot.sqlite3", tmp_path)
    try:
        ann = await store.get_or_create_user("telegram", "1")
        bob = await store.get_or_create_user("telegram", "2")
        made = []
        for owner in (bob, ann, bob, ann, ann):
            tune = await store.create_tune(
                owner.id, title=f"t{len(made)}", class_name="man", token="ohwx", label=None,
                photo_ids=[],
            )  # fmt: skip
            generation, _ = await store.create_generation(
                owner.id, tune_id=tune.id, prompt_typed="a", prompt_sent="b", negative_prompt="",
                options={"num_images": 4}, seed=len(made), target=DM,
            )  # fmt: skip
            made.append(generation)
        await store.update_generation(made[0].id, state="done")  # Bob's first: out of the queue
        await store.update_generation(made[3].id, state="submitted")
        await store.update_generation(made[4].id, state="failed")
        queued = await store.queued_generations(ann.id)
        assert [(g.id, g.state, position) for g, position in queued] == [
            (made[1].id, "queued", 0),
            (made[3].id, "submitted", 2),
        ]
        assert queued[0][0].options == {"num_images": 4}
        for generation, position in queued:
            assert position == await store.queue_position(generation.id)
        assert [p for _, p in await store.queued_generations(bob.id)] == [1]
    finally:
        await store.close()
