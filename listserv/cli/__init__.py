"""The admin's command line: parse arguments, call one function, print a table or JSON.

`main` is the root group; each group lives in its own module here, glue only (what the
commands do is in `listserv.admin`), and is registered below.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import click

from listserv.cli.archive import archive
from listserv.cli.common import Context
from listserv.cli.db import db
from listserv.cli.digest import digest
from listserv.cli.dkim import dkim
from listserv.cli.held import held
from listserv.cli.lists import lists
from listserv.cli.members import members
from listserv.cli.outbox import outbox
from listserv.cli.personal import members_export_data, members_forget
from listserv.cli.reading import show, threads
from listserv.cli.report import report
from listserv.cli.serve import serve
from listserv.cli.surgery import thread


def _version() -> str:
    try:
        return version("listserv")
    except PackageNotFoundError:
        return "0+unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_path",
    envvar="LISTSERV_CONFIG",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (default ./config.toml, or $LISTSERV_CONFIG).",
)
@click.version_option(_version(), prog_name="listserv")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """listserv: a mailing-list forum that lives in the inbox."""
    ctx.obj = Context(config_path)


for command in (
    archive,
    db,
    digest,
    dkim,
    held,
    lists,
    members,
    outbox,
    report,
    serve,
    show,
    thread,
    threads,
):
    main.add_command(command)
members.add_command(members_forget)
members.add_command(members_export_data)
