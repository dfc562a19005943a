"""`photoshoot-bot worker migrate`: our tables and procrastinate's, on a real PostgreSQL;
processes check the schema at start and name the command when it is missing."""

from __future__ import annotations

import psycopg
import pytest

from backends.local.errors import ConfigError
from backends.local.migrate import JOB_TABLES, check_migrated, job_app, migrate
from bot.__main__ import main


async def test_migrate_applies_both_schemas_once_and_jobs_can_be_deferred(pg_url: str) -> None:
    with pytest.raises(
        ConfigError,
        match=r"lacks tunes, prompts, pack_runs, prompt_likes, procrastinate_jobs.*migrate",
    ):
        await check_migrated(pg_url)
    applied = await migrate(pg_url)
    assert applied[0].startswith("worker tables") and "procrastinate" in applied[1]
    await check_migrated(pg_url)
    assert await migrate(pg_url) == []  # up to date: nothing applied twice

    app = job_app(pg_url)

    @app.task(name="probe", queue="probe")
    async def probe(n: int) -> None: ...

    async with app.open_async():
        await probe.defer_async(n=1)
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT task_name, args FROM procrastinate_jobs").fetchone()
    assert row == ("probe", {"n": 1})


async def test_a_half_applied_job_schema_is_refused(pg_url: str) -> None:
    await migrate(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {JOB_TABLES[-1]}")
    with pytest.raises(ConfigError, match=f"partly there.*{JOB_TABLES[-1]}"):
        await migrate(pg_url)
    with pytest.raises(ConfigError, match=JOB_TABLES[-1]):
        await check_migrated(pg_url)


def test_the_command_migrates_then_says_up_to_date(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORKER_DATABASE_URL", pg_url)
    assert main(["worker", "migrate"]) == 0
    assert "migrated: worker tables" in capsys.readouterr().out
    assert main(["worker", "migrate"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_the_command_names_a_missing_or_unreachable_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", "migrate"]) == 2
    assert "WORKER_DATABASE_URL is not set" in capsys.readouterr().err
    monkeypatch.setenv(
        "WORKER_DATABASE_URL", "postgresql://u:secret-pw@127.0.0.1:9/db?connect_timeout=2"
    )
    assert main(["worker", "migrate"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach WORKER_DATABASE_URL" in err and "secret-pw" not in err


async def test_a_fleet_database_from_before_packs_gets_their_tables(pg_url: str) -> None:
    await migrate(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:  # as `migrate` left it before packs
        conn.execute("DROP TABLE pack_runs; DROP TABLE prompt_likes")
    with pytest.raises(ConfigError, match=r"lacks pack_runs, prompt_likes: .*migrate"):
        await check_migrated(pg_url)
    assert await migrate(pg_url) == ["worker tables (tunes, prompts, pack_runs, prompt_likes)"]
    await check_migrated(pg_url)


async def test_a_fleet_database_from_before_published_progress_gets_its_columns(
    pg_url: str,
) -> None:
    await migrate(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:  # as `migrate` left it before them
        for table in ("tunes", "prompts"):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN progress, DROP COLUMN eta")
    with pytest.raises(
        ConfigError, match=r"lacks tunes\.progress, tunes\.eta, prompts\.progress, prompts\.eta"
    ):
        await check_migrated(pg_url)
    assert await migrate(pg_url) == [
        "columns tunes.progress, tunes.eta, prompts.progress, prompts.eta"
    ]
    await check_migrated(pg_url)
    assert await migrate(pg_url) == []
