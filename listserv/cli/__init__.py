"""The admin's command line: parse arguments, call one function, print a table or JSON.

`main` is the root group; each group lives in its own module here, glue only (what the
commands do is in `listserv.admin`), and is registered below.
"""

from __future__ import annotations

from importlib import import_module

import click

from listserv.cli.common import Context

# Command name -> "module:attribute". A command's module is imported only when that command
# runs (or when help lists it): importing every group eagerly cost 0.35 s of each command's
# start, mostly the archive importer's ingest path, which `lists list` never needs.
COMMANDS = {
    "archive": "listserv.cli.archive:archive",
    "db": "listserv.cli.db:db",
    "digest": "listserv.cli.digest:digest",
    "dkim": "listserv.cli.dkim:dkim",
    "held": "listserv.cli.held:held",
    "lists": "listserv.cli.lists:lists",
    "members": "listserv.cli.members:members",
    "outbox": "listserv.cli.outbox:outbox",
    "report": "listserv.cli.report:report",
    "serve": "listserv.cli.serve:serve",
    "show": "listserv.cli.reading:show",
    "thread": "listserv.cli.surgery:thread",
    "threads": "listserv.cli.reading:threads",
}


def load(spec: str) -> click.Command:
    module, _, attribute = spec.partition(":")
    command: click.Command = getattr(import_module(module), attribute)
    return command


class LazyGroup(click.Group):
    """The root group: its commands are imported when looked up, not at start."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        return load(spec) if spec else None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_path",
    envvar="LISTSERV_CONFIG",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (default ./config.toml, or $LISTSERV_CONFIG).",
)
@click.version_option(package_name="listserv", prog_name="listserv")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """listserv: a mailing-list forum that lives in the inbox."""
    ctx.obj = Context(config_path)
