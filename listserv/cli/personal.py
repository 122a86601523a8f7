"""`listserv members forget` and `export-data`: a member's rights over their data, run
by an admin.

Registered on the `members` group by cli/members; imports nothing of it.
"""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import click

from listserv.admin.lists import AdminError, require_list
from listserv.admin.personal import PersonalDataError, export_data, forget
from listserv.cli.common import Context, opened


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
    ctx: Context, list_address: str, address: str, erase_posts: bool, yes: bool
) -> None:
    """Remove ADDRESS from the list and from everything it stored about them: their posts
    stay, shown as a former member's, with the address gone from every stored copy."""
    if not yes:
        click.confirm(f"Forget {address} on {list_address}? This cannot be undone", abort=True)
    with opened(ctx, PersonalDataError, AdminError) as db:
        with db.session() as session:
            canonical = require_list(session, list_address, ctx.config.lists.domain).address
        done = forget(db, canonical, address, datetime.now(UTC), erase_posts=erase_posts)
    click.echo(
        f"forgotten: {done.posts} posts now a former member's"
        f"{' (text removed)' if erase_posts else ''}, {done.records} records removed "
        f"or made anonymous, {done.dropped_copies} queued copies dropped"
    )


@click.command("export-data")
@click.argument("list_address")
@click.argument("address")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The zip file to write: data.json and posts.mbox.",
)
@click.pass_obj
def members_export_data(ctx: Context, list_address: str, address: str, output: Path) -> None:
    """Write what the list holds about ADDRESS (memberships, roles, bounces, membership and
    moderation events, their posts as mbox) to a zip file that names no one else."""
    with opened(ctx, PersonalDataError, AdminError) as db:
        with db.session() as session:
            canonical = require_list(session, list_address, ctx.config.lists.domain).address
        data, mbox = export_data(db, canonical, address, ctx.config.lists.domain, datetime.now(UTC))
        with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("data.json", json.dumps(data, indent=2, ensure_ascii=False))
            archive.writestr("posts.mbox", mbox)
    click.echo(f"wrote {output}: {len(data['posts'])} posts and the records kept", err=True)
