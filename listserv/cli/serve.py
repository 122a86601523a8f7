"""`listserv serve`: run the receiver, dispatcher, scheduler and web server."""

from __future__ import annotations

import logging
from dataclasses import replace

import click
from sqlalchemy.exc import SQLAlchemyError

from listserv.cli.common import (
    Context,
    fail,
    pass_ctx,
    shown_url,
)
from listserv.config import Config


@click.command()
@click.option(
    "--role",
    "role",
    type=click.Choice(["all", "receiver", "dispatcher", "scheduler", "web"]),
    default="all",
    show_default=True,
    help="Which part of listserv this process runs.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Receiver processes sharing the SMTP port, e.g. one per core "
    "(default: [receiver] workers, 1).",
)
@click.option(
    "--dispatchers",
    type=click.IntRange(1, 64),
    default=None,
    help="Dispatcher processes sharing the outbox, so that DKIM signing uses every core "
    "(default: [delivery] dispatchers; when 0, one per core with --workers above 1, "
    "else 1).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug details too.")
@pass_ctx
def serve(ctx: Context, role: str, workers: int | None, dispatchers: int | None,
          verbose: bool) -> None:
    """Receive posts by SMTP, deliver them, and serve the web archive (Ctrl-C stops
    cleanly)."""
    from listserv.outbound.signing import SigningKeyError
    from listserv.server import ROLES, configure_logging, run

    config = ctx.config
    if workers is not None:
        if role not in ("all", "receiver"):
            fail(f"--workers runs receiver processes; --role {role} has none")
        config = replace(config, receiver=replace(config.receiver, workers=workers))
    if dispatchers is not None:
        if role not in ("all", "dispatcher"):
            fail(f"--dispatchers runs dispatcher processes; --role {role} has none")
        config = replace(config, delivery=replace(config.delivery, dispatchers=dispatchers))
    configure_logging(logging.DEBUG if verbose else logging.INFO)
    try:
        run(config, ROLES if role == "all" else (role,))
    except OSError as exc:
        fail(f"cannot start: {_start_error(config, exc)}")
    except SigningKeyError as exc:
        fail(f"cannot start: dkim.private_key_file {config.dkim_key_path}: {exc}")
    except SQLAlchemyError as exc:
        fail(
            f"cannot start: database.url {shown_url(config)}: "
            f"{str(exc.__cause__ or exc).splitlines()[0]}"
        )


def _start_error(config: Config, exc: OSError) -> str:
    """What stopped `serve`, with the file, or the config keys of the address it could not
    listen on."""
    if exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    text = exc.strerror or str(exc)
    for section, server in (("receiver", config.receiver), ("web", config.web)):
        if f"('{server.host}', {server.port})" in text:
            return f"{section}.host {server.host!r}, {section}.port {server.port}: {text}"
    return text
