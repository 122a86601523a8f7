"""What a careless operator feeds the CLI: files from Excel, config files in the wrong
encoding, database URLs that cannot work, commands run in the wrong folder. Each gets one
line naming the file or key and what to do, never a traceback, and changes nothing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

from listserv.cli import main

from .conftest import LIST, make_message

NAMES = [
    ("zoe@example.org", "Zoë Ångström"),
    ("li@example.cn", "李小龍"),
    ("olga@example.ru", "Ольга Петрова"),
    ("amal@example.eg", "أمل حداد"),
]


def one_line_error(result: Result) -> str:
    """The error of a refused command: exit 1, one line, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    return line


def member_addresses(cli: Any) -> list[str]:
    return [row["address"] for row in json.loads(cli("members", "list", LIST, "--json").output)]


def csv_text(rows: list[tuple[str, str]]) -> str:
    return "address,name\r\n" + "".join(f"{a},{n}\r\n" for a, n in rows)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_members_csv_as_excel_saves_it_keeps_every_name(
    als: str, cli: Any, tmp_path: Path, encoding: str
) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(csv_text(NAMES).encode(encoding))  # utf-16: with a BOM, as Excel writes
    result = cli("members", "import", LIST, str(path))
    assert result.exit_code == 0, result.output
    assert result.output == "added 4, skipped 0, invalid 0\n"
    rows = {
        r["address"]: r["name"] for r in json.loads(cli("members", "list", LIST, "--json").output)
    }
    assert all(rows[address] == name for address, name in NAMES)


def test_a_latin1_csv_is_refused_naming_the_line_and_the_encoding(
    als: str, cli: Any, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(csv_text(NAMES[:1]).encode("latin-1"))
    before = member_addresses(cli)
    line = one_line_error(cli("members", "import", LIST, str(path)))
    assert line == (
        f"Error: {path}: line 2 is not UTF-8: save the file as CSV UTF-8 (or "
        "UTF-16 with a BOM); nothing imported"
    )
    assert member_addresses(cli) == before


def test_a_file_with_bad_rows_changes_nothing_unless_told_to_skip_them(
    als: str, cli: Any, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    path.write_text(
        "address,name,mode\n"
        "frank@example.org,Frank Fox,digest\n"
        "not-an-address,Nobody,each\n"
        "gina@example.org,Gina,sometimes\n"
    )
    before = member_addresses(cli)
    result = cli("members", "import", LIST, str(path))
    assert "invalid line 3: 'not-an-address' is not an email address" in result.output
    assert "invalid line 4: invalid mode 'sometimes'" in result.output
    assert one_line_error(result) == (
        f"Error: {path}: 2 invalid rows, nothing imported (fix "
        "them, or use --skip-bad to add the good rows)"
    )
    assert member_addresses(cli) == before

    skipping = cli("members", "import", LIST, str(path), "--skip-bad")
    assert "added 1, skipped 0, invalid 2" in skipping.output
    assert "frank@example.org" in member_addresses(cli)


def test_an_unterminated_quote_is_reported_with_its_line(
    als: str, cli: Any, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    path.write_text('address,name\nfrank@example.org,"Frank Fox\ngina@example.org,Gina\n')
    before = member_addresses(cli)
    line = one_line_error(cli("members", "import", LIST, str(path)))
    assert line == f"Error: {path}: line 2: unterminated quote; nothing imported"
    assert member_addresses(cli) == before


def test_a_config_file_that_is_not_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes('[lists]\ndomain = "lists.example.org"\n# Zoë\n'.encode("latin-1"))
    line = one_line_error(CliRunner().invoke(main, ["-c", str(path), "lists", "list"]))
    assert line == f"Error: {path}: line 3 is not UTF-8 (TOML files are): save the file as UTF-8"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "not a url",
            "database.url 'not a url' is not a database URL (e.g. "
            "sqlite:///var/listserv.db or postgresql+psycopg://user@host/database)",
        ),
        (
            "mysql://listserv@db.internal/listserv",
            "database.url 'mysql' needs the Python module 'MySQLdb', which is not installed: "
            "install it, or use sqlite or postgresql+psycopg",
        ),
        ("pigeon://loft/listserv", "database.url 'pigeon' is not a database this SQLAlchemy knows"),
    ],
)
@pytest.mark.parametrize("command", [["lists", "list"], ["db", "init"], ["serve"]])
def test_a_database_url_that_cannot_work_is_one_line(
    tmp_path: Path, url: str, message: str, command: list[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{url}"\n')
    line = one_line_error(CliRunner().invoke(main, ["-c", str(path), *command]))
    assert line == f"Error: {path}: {message}"


def test_a_sqlite_url_into_a_missing_folder_is_an_error_not_a_new_folder(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[database]\nurl = "sqlite:///dta/listserv.db"\n')  # a typo of data/
    (tmp_path / "data").mkdir()
    line = one_line_error(CliRunner().invoke(main, ["-c", str(path), "db", "init"]))
    assert line == (
        f"Error: {path}: database.url folder {tmp_path / 'dta'} does not exist: "
        "create it, or correct the path"
    )
    assert not (tmp_path / "dta").exists()


def test_a_command_run_where_there_is_no_config_nor_database_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LISTSERV_CONFIG", raising=False)
    runner = CliRunner()
    line = one_line_error(runner.invoke(main, ["lists", "list"]))
    assert line == (
        f"Error: no config.toml here (nor -c or $LISTSERV_CONFIG) and no database "
        f"at {tmp_path / 'var' / 'listserv.db'}: run in the folder of your config, "
        "give -c CONFIG, or run `listserv db init` to start one here"
    )
    assert not (tmp_path / "var").exists()
    # Starting one here is what `db init` is for; then the commands work on it.
    assert runner.invoke(main, ["db", "init"]).exit_code == 0
    listed = runner.invoke(main, ["lists", "list", "--json"])
    assert (listed.exit_code, listed.output) == (0, "[]\n")


def test_members_add_says_added_only_once_it_is_committed(
    als: str, cli: Any, sqlite_only: None
) -> None:
    """The disk goes as the new member's row is committed: SQLite's own error."""

    def note_insert(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO members"):
            conn.info["member_written"] = True

    def disk_gone(conn: Any) -> None:
        if conn.info.pop("member_written", False):
            cause = sqlite3.OperationalError("disk I/O error")
            raise OperationalError("COMMIT", None, cause) from cause

    event.listen(Engine, "before_cursor_execute", note_insert)
    event.listen(Engine, "commit", disk_gone)
    try:
        result = cli("members", "add", LIST, "frank@example.org")
    finally:
        event.remove(Engine, "commit", disk_gone)
        event.remove(Engine, "before_cursor_execute", note_insert)
    assert one_line_error(result) == "Error: database error: disk I/O error"
    assert "added" not in result.output
    assert "frank@example.org" not in member_addresses(cli)


def test_lists_show_prints_values_as_an_admin_writes_them(als: str, cli: Any) -> None:
    shown = cli("lists", "show", LIST).output
    assert "members_by_mode: each 3, digest 1, nomail 1\n" in shown
    assert "max_retry_hours: 120\n" in shown
    assert "max_retry_hours_default: yes\n" in shown
    assert "{" not in shown and "True" not in shown


def test_a_thread_of_one_post_says_1_post(als: str, cli: Any, post: Any) -> None:
    assert post(make_message("alice@example.org", "Hello", "Hi all.")).code == 250
    (thread,) = json.loads(cli("threads", LIST, "--json").output)
    assert cli("show", str(thread["id"])).output.startswith("# Hello  (1 post)\n")


def big_csv(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "many.csv"
    names = "".join(f"m{i}@example.org,{NAMES[i % 4][1]} {i}\n" for i in range(count))
    path.write_text("address,name\n" + names, encoding="utf-8")
    return path


@pytest.mark.both_databases
def test_a_big_import_off_a_terminal_says_how_far_it_got_in_plain_lines(
    als: str, cli: Any, tmp_path: Path
) -> None:
    before = member_addresses(cli)
    result = cli("members", "import", LIST, str(big_csv(tmp_path, 10_001)))
    assert result.exit_code == 0, result.output
    assert result.output == (
        "... 10000 of 10001 members added\nadded 10001, skipped 0, invalid 0\n"
    )
    rows = {r["address"]: r for r in json.loads(cli("members", "list", LIST, "--json").output)}
    assert len(rows) == len(before) + 10_001
    assert rows["m9997@example.org"]["name"] == "李小龍 9997"
    assert rows["m10000@example.org"]["mode"] == "each"


def test_an_import_whose_disk_fails_midway_adds_nobody(
    als: str, cli: Any, tmp_path: Path, sqlite_only: None
) -> None:
    """The disk goes while the second thousands of rows are written: all or nothing."""
    inserts = []

    def disk_gone(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO members"):
            inserts.append(statement)
            if len(inserts) == 2:
                cause = sqlite3.OperationalError("disk I/O error")
                raise OperationalError(statement, None, cause) from cause

    before = member_addresses(cli)
    event.listen(Engine, "before_cursor_execute", disk_gone)
    try:
        result = cli("members", "import", LIST, str(big_csv(tmp_path, 10_001)))
    finally:
        event.remove(Engine, "before_cursor_execute", disk_gone)
    assert one_line_error(result) == "Error: database error: disk I/O error"
    assert "added" not in result.output
    assert member_addresses(cli) == before
