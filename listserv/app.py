"""The application context: what every running part shares, built once at start.

The CLI (`cli.common.Context`) and the server (`server.Server`) each build one `App` and
hand it to the parts they start, instead of passing the same config, database, templates
and clock, in different orders, through every signature. The jinja environment is defined
here and built by `App` alone; the database, the templates and the token secret are made
on first use, so a command that needs none of them starts without them (nor jinja).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from listserv.config import Config
from listserv.store.database import Database

if TYPE_CHECKING:
    from jinja2 import Environment


PACKAGE_DIR = Path(__file__).resolve().parent


def utcnow() -> datetime:
    return datetime.now(UTC)


def shipped_templates() -> Path:
    """The templates of the installed package or, in a source checkout, the project's."""
    installed = PACKAGE_DIR / "templates"
    return installed if installed.is_dir() else PACKAGE_DIR.parent / "templates"


def environment(config_dir: Path) -> Environment:
    """The jinja2 environment for every text a person reads: an admin's `templates/` next
    to the config file over the shipped ones. Autoescape on for HTML and XML (feeds), off
    for text; undefined names are errors, not blanks."""
    import jinja2

    from listserv.web.text import hide_addresses

    folders = [config_dir / "templates", shipped_templates()]
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(f)) for f in folders
                                    if f.is_dir()]),
        autoescape=jinja2.select_autoescape(["html", "xml"], default_for_string=False,
                                            default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
    )
    # Pages show subjects and file names as people wrote them, but never an address in them.
    env.filters["masked"] = hide_addresses
    return env


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
        """The jinja environment of the config's folder, built on first use."""
        return environment(self.config.base_dir)

    def secret(self) -> bytes:
        """The token secret, read (or created) once in its own transaction: a page or a
        fan-out must not pay a transaction for it each time."""
        if self._secret is None:
            from listserv.store.settings import token_secret

            with self.db.session() as session:
                self._secret = token_secret(session, self.config)
        return self._secret
