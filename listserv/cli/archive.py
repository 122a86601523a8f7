"""`listserv archive import|export|reindex`: bring a list's years of mail in, take them
out, rebuild its search index.

Registered by the main command module; imports nothing of it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from listserv.admin import archive as archiving
from listserv.admin.lists import AdminError, require_list
from listserv.cli.common import Context, opened, pass_ctx
from listserv.config import Config
from listserv.store.database import Database

PERIODIC_LINES = 10_000  # messages between two progress lines when not on a terminal
BIG_MBOX = 8 * 1024 * 1024  # an mbox this big is parsed by one process per CPU


@click.group()
def archive() -> None:
    """Import an archive (mbox, Maildir, .eml folder), export a list's posts as mbox, rebuild
    the search index."""


def _list_address(db: Database, config: Config, address: str) -> str:
    with db.session() as session:
        return require_list(session, address, config.lists.domain).address


@archive.command("import")
@click.argument("list_address")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(archiving.FORMATS),
    default=None,
    help="The source's format (default: detected).",
)
@click.option("--dry-run", is_flag=True, help="Read and check everything, store nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes parsing messages (default: one per CPU for an mbox over 8 MB, else 1).",
)
@click.pass_obj
def import_(
    ctx: Context,
    list_address: str,
    path: Path,
    fmt: str | None,
    dry_run: bool,
    as_json: bool,
    jobs: int | None,
) -> None:
    """Store each message of PATH as a post of LIST_ADDRESS, threaded and dated as it was;
    nothing is emailed, and what is stored already is skipped."""
    with opened(ctx, archiving.ArchiveError, AdminError) as db:
        address = _list_address(db, ctx.config, list_address)
        fmt = fmt or archiving.detect(path)
        if jobs is None:
            big = fmt == "mbox" and path.stat().st_size >= BIG_MBOX
            jobs = (os.cpu_count() or 1) if big else 1
        if sys.stderr.isatty() and not as_json:
            counts = _with_bar(db, address, path, fmt, dry_run, jobs)
        else:
            counts = archiving.import_archive(
                db,
                address,
                archiving.messages(path, fmt),
                datetime.now(UTC),
                dry_run=dry_run,
                progress=_periodic(),
                workers=jobs,
            )
    if as_json:
        click.echo(
            json.dumps({**counts.as_dict(), "dry_run": dry_run}, indent=2, ensure_ascii=False)
        )
        return
    for refused in counts.refused:
        click.echo(f"refused: {refused}", err=True)
    verb = "would import" if dry_run else "imported"
    click.echo(
        f"{verb} {counts.imported}, skipped {counts.duplicates} already stored, "
        f"refused {len(counts.refused)}"
        + (f", {counts.relinked} replies linked to a later parent" if counts.relinked else "")
    )


def _with_bar(
    db: Database, address: str, path: Path, fmt: str, dry_run: bool, jobs: int
) -> archiving.Counts:
    """The import under a progress bar: bytes of an mbox file, files of a folder."""
    total = path.stat().st_size if fmt == "mbox" else len(archiving.files(path, fmt))
    with click.progressbar(length=total, label="importing", file=sys.stderr) as bar:

        def counted() -> Iterator[tuple[str, bytes]]:
            for position, raw in archiving.messages(path, fmt):
                yield position, raw
                bar.update(len(raw) if fmt == "mbox" else 1)

        return archiving.import_archive(
            db, address, counted(), datetime.now(UTC), dry_run=dry_run, workers=jobs
        )


def _periodic() -> Any:
    """Progress as a plain line every so many messages, on stderr (not a terminal)."""
    last = [0]

    def show(counts: archiving.Counts) -> None:
        seen = counts.imported + counts.duplicates + len(counts.refused)
        if seen - last[0] >= PERIODIC_LINES:
            last[0] = seen
            click.echo(f"... {seen} messages read, {counts.imported} imported", err=True)

    return show


@archive.command("export")
@click.argument("list_address")
@click.option("--thread", "thread_id", type=int, default=None, help="Only this thread.")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Only posts from this day (YYYY-MM-DD, UTC) on.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The mbox file to write (default: standard output).",
)
@click.pass_obj
def export(
    ctx: Context,
    list_address: str,
    thread_id: int | None,
    since: datetime | None,
    output: Path | None,
) -> None:
    """Write the list's posts as received (original headers and bodies) as an mboxrd
    file, in date order."""
    with opened(ctx, archiving.ArchiveError, AdminError) as db:
        address = _list_address(db, ctx.config, list_address)
        when = since.replace(tzinfo=UTC) if since else None
        if output is None:
            written = archiving.export(
                db, address, sys.stdout.buffer, thread_id=thread_id, since=when
            )
        else:
            with output.open("wb") as out:
                written = archiving.export(db, address, out, thread_id=thread_id, since=when)
    if output is not None:
        click.echo(f"exported {written} posts to {output}", err=True)


@archive.command("reindex")
@click.argument("list_address", metavar="LIST")
@pass_ctx
def archive_reindex(ctx: Context, list_address: str) -> None:
    """Rebuild the search index of LIST from its stored posts (on SQLite: of every list)."""
    from listserv.store import search

    with ctx.session() as s:
        ml = require_list(s, list_address, ctx.config.lists.domain)
        indexed = search.reindex(s.connection(), ml.id)
    click.echo(f"{ml.address}: search index rebuilt, {indexed} posts indexed")
