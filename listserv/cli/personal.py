"""`listserv members forget`: a member's right to be forgotten, run by an admin.

Registered on the `members` group by the main command module; imports nothing of it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click
from sqlalchemy.exc import SQLAlchemyError

from listserv.admin.lists import AdminError, require_list
from listserv.admin.personal import PersonalDataError, forget
from listserv.cli.archive import CommandContext


@click.command("forget")
@click.argument("list_address")
@click.argument("address")
@click.option(
    "--erase-posts",
    is_flag=True,
    help="Also remove the text of their posts (the threads stay readable).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def members_forget(
    ctx: CommandContext, list_address: str, address: str, erase_posts: bool, yes: bool
) -> None:
    """Remove ADDRESS from the list and from everything it stored about them: their posts
    stay, shown as a former member's, with the address gone from every stored copy."""
    if not yes:
        click.confirm(f"Forget {address} on {list_address}? This cannot be undone", abort=True)
    db = ctx.database()
    try:
        db.create_schema()
        with db.session() as session:
            canonical = require_list(session, list_address, ctx.config.lists.domain).address
        done = forget(db, canonical, address, datetime.now(UTC), erase_posts=erase_posts)
    except (PersonalDataError, AdminError) as exc:
        raise click.ClickException(str(exc)) from None
    except SQLAlchemyError as exc:
        raise click.ClickException(
            f"database error: {str(exc.__cause__ or exc).splitlines()[0]}"
        ) from None
    finally:
        db.dispose()
    click.echo(
        f"forgotten: {done.posts} posts now a former member's"
        f"{' (text removed)' if erase_posts else ''}, {done.records} records removed "
        f"or made anonymous, {done.dropped_copies} queued copies dropped"
    )
