"""`listserv db init|upgrade`: create or migrate the schema."""

from __future__ import annotations

import click
from sqlalchemy.exc import SQLAlchemyError

from listserv.cli.common import (
    Context,
    database_error,
    fail,
    pass_ctx,
    shown_url,
)
from listserv.store.settings import token_secret


@click.group()
def db() -> None:
    """Database schema."""


@db.command("init")
@pass_ctx
def db_init(ctx: Context) -> None:
    """Create the schema, or bring it up to date (safe to run again)."""
    _migrate(ctx, create=True)
    with ctx.session() as s:
        token_secret(s, ctx.config)
    click.echo(f"database ready: {shown_url(ctx.config)}")


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@pass_ctx
def db_upgrade(ctx: Context, revision: str) -> None:
    """Migrate an empty or older database to the current schema."""
    before, after = _migrate(ctx, revision)
    click.echo(f"database at revision {after} (was {before or 'empty'})")


def _migrate(
    ctx: Context, revision: str = "head", create: bool = False
) -> tuple[str | None, str | None]:
    from alembic.util import CommandError

    from listserv.store import migrate

    database = ctx.database(create=create)
    try:
        return migrate.upgrade(database.engine, revision)
    except CommandError as exc:
        fail(f"migration error: {exc}")
    except SQLAlchemyError as exc:
        fail(database_error(exc))
    finally:
        database.dispose()
