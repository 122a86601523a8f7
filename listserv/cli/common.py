"""What every command shares: the context (config, database, one transaction), errors as
one stderr line, and listings as a table or JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from listserv.admin import lists as admin
from listserv.config import DEFAULT_PATH, Config, ConfigError, load
from listserv.store.database import Database, sqlite_path

if TYPE_CHECKING:
    from jinja2 import Environment


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


class Context:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None
        self._templates: Environment | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            required = self.config_path is not None
            try:
                self._config = load(self.config_path, required=required)
            except ConfigError as exc:
                fail(str(exc))
        return self._config

    @property
    def templates(self) -> Environment:
        """The jinja environment of the config's folder (its templates/ over the shipped
        ones): built in this one place, once, when a command first writes to a person."""
        if self._templates is None:
            from listserv.templating import environment

            self._templates = environment(self.config.base_dir)
        return self._templates

    def database(self, *, create: bool = False) -> Database:
        """The configured database. Without a config file, only `db init` (create) may make
        the default one: any other command there is run in the wrong folder, and would
        otherwise work on a new, empty database."""
        config = self.config
        if not create and self.config_path is None and not Path(DEFAULT_PATH).exists():
            path = sqlite_path(config.database_url)
            if path is not None and not path.exists():
                fail(
                    f"no {DEFAULT_PATH} here (nor -c or $LISTSERV_CONFIG) and no database "
                    f"at {path}: run in the folder of your config, give -c CONFIG, or "
                    "run `listserv db init` to start one here"
                )
        try:
            return Database(config.database_url, config.database.busy_timeout)
        except OSError as exc:
            fail(f"database.url: cannot create {exc.filename}: {exc.strerror}")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction; admin and database errors become one line on stderr."""
        db = self.database()
        try:
            db.check_schema()
            with db.session() as session:
                yield session
        except admin.AdminError as exc:
            fail(str(exc))
        except SQLAlchemyError as exc:
            fail(database_error(exc))
        finally:
            db.dispose()


def database_error(exc: SQLAlchemyError) -> str:
    return f"database error: {str(exc.__cause__ or exc).splitlines()[0]}"


@contextmanager
def opened(ctx: Context, *errors: type[Exception]) -> Iterator[Database]:
    """The database, its schema current, for a command whose work runs its own
    transactions; `errors` of that work, and file and database errors, end the command
    with one line."""
    db = ctx.database()
    try:
        db.check_schema()
        yield db
    except errors as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{exc.filename}: {exc.strerror}") from None
    except SQLAlchemyError as exc:
        raise click.ClickException(database_error(exc)) from None
    finally:
        db.dispose()


def shown_url(config: Config) -> str:
    """The database URL for the terminal, its password masked."""
    return make_url(config.database_url).render_as_string(hide_password=True)


pass_ctx = click.make_pass_decorator(Context)


def now() -> datetime:
    return datetime.now(UTC)


def emit(rows: list[dict[str, Any]], as_json: bool, columns: list[str]) -> None:
    """A listing as JSON (a list of objects) or as an aligned table."""
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


json_option: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON list of objects."
)
