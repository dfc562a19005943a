"""`photoshoot-bot worker migrate`: the fleet's PostgreSQL schema, ours and procrastinate's.

Migrations are applied by this command only, never as a side effect of starting a process: a
fleet has many processes and one schema. Processes check it at start (`check_migrated`) and
refuse with the command to run.

Procrastinate's schema is applied whole on an empty database. Upgrading it after a procrastinate
upgrade uses procrastinate's own migration files (`procrastinate schema --migrations-path`), which
this command does not yet run: it says so when it finds the schema half there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import procrastinate

from backends.local.errors import ConfigError
from backends.local.fleet_config import DATABASE_VARIABLE, FleetConfig
from backends.local.pg_store import MIGRATE_HINT, WORKER_TABLES, apply_schema, missing_schema

JOB_TABLES = (
    "procrastinate_jobs",
    "procrastinate_workers",
    "procrastinate_events",
    "procrastinate_periodic_defers",
)
"""procrastinate's tables (3.x): present together once its schema is applied."""


def job_app(conninfo: str) -> procrastinate.App:
    """The procrastinate app on the fleet's database (psycopg 3, async)."""
    return procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))


async def migrate(conninfo: str) -> list[str]:
    """Apply what the database lacks; what was applied (empty: it was up to date)."""
    applied = []
    lacking = await missing_schema(conninfo, WORKER_TABLES)
    if lacking:
        await apply_schema(conninfo)
        columns = [name for name in lacking if "." in name]  # a database made before them
        applied.append(
            f"columns {', '.join(columns)}"
            if len(columns) == len(lacking)
            else "worker tables (tunes, prompts, pack_runs, prompt_likes)"
        )
    missing = await missing_schema(conninfo, JOB_TABLES)
    if len(missing) == len(JOB_TABLES):
        app = job_app(conninfo)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
        applied.append(f"procrastinate {procrastinate.__version__} schema")
    elif missing:
        raise ConfigError(
            f"procrastinate's schema is partly there (no {', '.join(missing)}): upgrade it with"
            " procrastinate's migrations (`procrastinate schema --migrations-path`)"
        )
    return applied


async def check_migrated(conninfo: str) -> None:
    """ConfigError naming the missing tables and the command to run, unless all are there."""
    missing = await missing_schema(conninfo, WORKER_TABLES + JOB_TABLES)
    if missing:
        raise ConfigError(f"the worker database lacks {', '.join(missing)}: {MIGRATE_HINT}")


def run_migrate(environ: Mapping[str, str] | None = None) -> list[str]:
    """The command: migrate the database WORKER_DATABASE_URL names."""
    config = FleetConfig.from_env(environ)
    if config.database_url is None:
        raise ConfigError(
            f"{DATABASE_VARIABLE} is not set: `worker migrate` applies the fleet's schema to its"
            " PostgreSQL (postgresql://user:password@host:5432/database)"
        )
    return asyncio.run(migrate(config.database_url))
