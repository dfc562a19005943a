"""The database schema: numbered migrations, and the SQLite version the queries need.

A database records the number of migrations applied in its `user_version`; opening it applies
the newer ones, each in one transaction, so an existing database is brought up to date and
keeps its rows. Migrations are only ever appended: a released one never changes.
"""

from __future__ import annotations

import sqlite3

import aiosqlite

from bot.config import ConfigError

MIN_SQLITE = (3, 35, 0)
"""`RETURNING` (one trip to the database thread per write) needs SQLite 3.35 (2021)."""

MIGRATIONS: tuple[str, ...] = (
    # 1: the initial schema.
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        platform TEXT NOT NULL,
        platform_user_id TEXT NOT NULL,
        display_name TEXT,
        active_tune_id INTEGER,
        created_at TEXT NOT NULL,
        UNIQUE (platform, platform_user_id)
    );
    CREATE TABLE photos (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        tune_id INTEGER REFERENCES tunes(id) ON DELETE SET NULL,
        sha256 TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        size_bytes INTEGER NOT NULL,
        path TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX photos_pending ON photos (user_id) WHERE tune_id IS NULL;
    CREATE TABLE tunes (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        title TEXT NOT NULL UNIQUE,
        class_name TEXT NOT NULL,
        label TEXT,
        token TEXT NOT NULL,
        backend_id INTEGER,
        state TEXT NOT NULL,
        eta TEXT,
        error TEXT,
        callback_secret TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        trained_at TEXT
    );
    CREATE TABLE generations (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        tune_id INTEGER NOT NULL REFERENCES tunes(id) ON DELETE CASCADE,
        prompt_typed TEXT NOT NULL,
        prompt_sent TEXT NOT NULL,
        negative_prompt TEXT NOT NULL DEFAULT '',
        options TEXT NOT NULL DEFAULT '{}',
        seed INTEGER NOT NULL,
        backend_id INTEGER,
        state TEXT NOT NULL,
        error TEXT,
        result_files TEXT NOT NULL DEFAULT '[]',
        callback_secret TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        finished_at TEXT
    );
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        job_kind TEXT NOT NULL CHECK (job_kind IN ('tune', 'generation')),
        job_id INTEGER NOT NULL,
        platform TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        is_private INTEGER NOT NULL DEFAULT 1,
        reply_to_message_id TEXT,
        status_message_id TEXT,
        status_text TEXT,
        delivered_at TEXT,
        UNIQUE (job_kind, job_id)
    );
    """,
    # 2: chat buttons (reroll, more like #n, upscale ...) keep their state here, not in memory
    # or in the button itself, so they work after a restart and fit Telegram's 64-byte limit.
    """
    CREATE TABLE actions (
        id INTEGER PRIMARY KEY,
        token TEXT NOT NULL UNIQUE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        generation_id INTEGER REFERENCES generations(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        argument TEXT,
        created_at TEXT NOT NULL
    );
    """,
    # 3: indexes for what every busy chat asks (/status, /models, the queue position), so
    # they stay lookups, not scans, as the tables grow.
    """
    CREATE INDEX tunes_by_user ON tunes (user_id);
    CREATE INDEX generations_by_user ON generations (user_id);
    CREATE INDEX generations_by_backend_id ON generations (backend_id);
    CREATE INDEX generations_unfinished ON generations (id)
        WHERE state IN ('queued', 'submitted');
    """,
    # 4: languages. `language` is the user's own choice (/language; NULL = follow the
    # platform), `platform_language` the tag their platform last sent (Telegram's
    # language_code, Discord's locale), kept for messages sent outside an update (job news,
    # Discord DMs, which carry no locale).
    """
    ALTER TABLE users ADD COLUMN language TEXT;
    ALTER TABLE users ADD COLUMN platform_language TEXT;
    """,
    # 5: consent (issue 15): when the user confirmed, before their first training, that the
    # photos are of themselves or of an adult who agreed (NULL: not yet; asked at /train).
    """
    ALTER TABLE users ADD COLUMN consented_at TEXT;
    """,
    # 6: credits (bot/core/ledger.py). An append-only ledger keyed by the chat account
    # (`telegram:42`, so it outlives /delete); `balances` is its running sum, kept by a trigger
    # and never below zero (CHECK), so no write of any process can overdraw an account. A hold
    # is settled at most once (captured or released), a payment is credited and refunded at
    # most once, an account is welcomed once: unique indexes say so. Then bans and the log of
    # what admins did (bot/core/admin.py).
    """
    CREATE TABLE ledger (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        kind TEXT NOT NULL,
        amount INTEGER NOT NULL,
        units INTEGER NOT NULL DEFAULT 0,
        job_kind TEXT,
        job_id INTEGER,
        hold_id INTEGER REFERENCES ledger(id),
        payment_ref TEXT,
        actor TEXT,
        note TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX ledger_by_account ON ledger (account, id);
    CREATE INDEX ledger_by_time ON ledger (created_at);
    CREATE INDEX ledger_holds_by_job ON ledger (job_kind, job_id) WHERE kind = 'hold';
    CREATE UNIQUE INDEX ledger_one_settlement ON ledger (hold_id) WHERE hold_id IS NOT NULL;
    CREATE UNIQUE INDEX ledger_one_payment ON ledger (kind, payment_ref)
        WHERE payment_ref IS NOT NULL;
    CREATE UNIQUE INDEX ledger_one_welcome ON ledger (account) WHERE kind = 'welcome';
    CREATE TABLE balances (
        account TEXT PRIMARY KEY,
        credits INTEGER NOT NULL CHECK (credits >= 0)
    );
    CREATE TRIGGER ledger_keeps_the_balance AFTER INSERT ON ledger BEGIN
        UPDATE balances SET credits = credits + NEW.amount WHERE account = NEW.account;
        INSERT INTO balances (account, credits) SELECT NEW.account, NEW.amount
            WHERE NOT EXISTS (SELECT 1 FROM balances WHERE account = NEW.account);
    END;
    CREATE TRIGGER ledger_is_append_only_update BEFORE UPDATE ON ledger BEGIN
        SELECT RAISE(ABORT, 'the ledger is append-only');
    END;
    CREATE TRIGGER ledger_is_append_only_delete BEFORE DELETE ON ledger BEGIN
        SELECT RAISE(ABORT, 'the ledger is append-only');
    END;
    CREATE TABLE bans (
        account TEXT PRIMARY KEY,
        actor TEXT NOT NULL,
        reason TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE admin_log (
        id INTEGER PRIMARY KEY,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        detail TEXT,
        created_at TEXT NOT NULL
    );
    """,
    # 7: retention (issue 15, bot/core/retention.py). `last_seen_at`: when the user last used
    # the bot (written at most hourly); users of an older database count as seen now, so an
    # upgrade deletes nobody's media at once. `retention_notice`: what the sweep removed, told
    # on the next visit, then cleared. `retention_runs`: each sweep, so a restart knows
    # whether a day has passed and a run cut short is run again. And what intake's inspection
    # found of each photo, for /train: its perceptual hash (how many distinct poses the set
    # holds) and the attributes seen (the tune's `characteristics`, e.g. glasses).
    """
    ALTER TABLE users ADD COLUMN last_seen_at TEXT;
    ALTER TABLE users ADD COLUMN retention_notice TEXT;
    UPDATE users SET last_seen_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now');
    CREATE TABLE retention_runs (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        removed TEXT
    );
    ALTER TABLE photos ADD COLUMN phash TEXT;
    ALTER TABLE photos ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
    """,
    # 8: shoots (issue 14, bot/core/shoot_jobs.py): a pack run on one model, and its shots
    # (the prompts the run made on the backend) with their files and whether they reached
    # the chat, so a restart delivers the rest once. Deliveries are rebuilt to take the new
    # job kind (SQLite cannot change a CHECK in place).
    """
    CREATE TABLE shoots (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        tune_id INTEGER NOT NULL REFERENCES tunes(id) ON DELETE CASCADE,
        pack_id INTEGER NOT NULL,
        pack_title TEXT NOT NULL,
        num_images INTEGER NOT NULL,
        state TEXT NOT NULL,
        error TEXT,
        callback_secret TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX shoots_by_user ON shoots (user_id);
    CREATE TABLE shots (
        id INTEGER PRIMARY KEY,
        shoot_id INTEGER NOT NULL REFERENCES shoots(id) ON DELETE CASCADE,
        backend_id INTEGER NOT NULL UNIQUE,
        text TEXT NOT NULL,
        num_images INTEGER NOT NULL,
        state TEXT NOT NULL,
        result_files TEXT NOT NULL DEFAULT '[]',
        delivered INTEGER NOT NULL DEFAULT 0,
        liked INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX shots_by_shoot ON shots (shoot_id);
    CREATE TABLE deliveries_new (
        id INTEGER PRIMARY KEY,
        job_kind TEXT NOT NULL CHECK (job_kind IN ('tune', 'generation', 'photoshoot')),
        job_id INTEGER NOT NULL,
        platform TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        is_private INTEGER NOT NULL DEFAULT 1,
        reply_to_message_id TEXT,
        status_message_id TEXT,
        status_text TEXT,
        delivered_at TEXT,
        UNIQUE (job_kind, job_id)
    );
    INSERT INTO deliveries_new SELECT * FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_new RENAME TO deliveries;
    """,
)


def check_sqlite_version() -> None:
    """Refuse an SQLite too old for our queries, saying how to get a newer one."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise ConfigError(
            f"This Python's SQLite is {sqlite3.sqlite_version}; the bot needs "
            f"{'.'.join(map(str, MIN_SQLITE))} or newer (writes use RETURNING). Use the "
            "Docker image, or a Python built with a newer SQLite (python.org, pyenv)."
        )


async def schema_version(db: aiosqlite.Connection) -> int:
    rows = list(await db.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0]) if rows else 0


async def migrate(db: aiosqlite.Connection) -> None:
    """Apply every migration newer than the database's `user_version`, each atomically."""
    current = await schema_version(db)
    for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
        await db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
