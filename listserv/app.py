"""The application context: what every running part shares, built once at start.

The CLI (`cli.common.Context`) and the server (`server.Server`) each build one `App` and
hand it to the parts they start, instead of passing the same config, database, templates
and clock, in different orders, through every signature. The jinja environment is built
here and nowhere else; the database, the templates and the token secret are made on first
use, so a command that needs none of them starts without them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

from listserv.config import Config
from listserv.store.database import Database

if TYPE_CHECKING:
    from jinja2 import Environment


def utcnow() -> datetime:
    return datetime.now(UTC)


class App:
    """Config, database, templates, clock and token secret of one process."""

    def __init__(self, config: Config, clock: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.clock = clock
        self._secret: bytes | None = None

    @cached_property
    def db(self) -> Database:
        """The configured database (raises OSError when SQLite cannot create its file)."""
        return Database(self.config.database_url, self.config.database.busy_timeout)

    @cached_property
    def templates(self) -> Environment:
        """The jinja environment of the config's folder (its templates/ over the shipped
        ones); imported on first use, which keeps jinja out of a command's start."""
        from listserv.templating import environment

        return environment(self.config.base_dir)

    def secret(self) -> bytes:
        """The token secret, read (or created) once in its own transaction: a page or a
        fan-out must not pay a transaction for it each time."""
        if self._secret is None:
            from listserv.store.settings import token_secret

            with self.db.session() as session:
                self._secret = token_secret(session, self.config)
        return self._secret
