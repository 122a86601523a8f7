"""The admin's command line: every command, its JSON, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from listserv.cli import main

from .conftest import LIST, make_message


def subcommands(group: click.Group) -> dict[str, click.Command]:
    """A group's commands as click finds them (the root imports each one when asked)."""
    ctx = click.Context(group)
    found = {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}
    return {name: command for name, command in found.items() if command is not None}


def command_paths(group: click.Group, path: tuple[str, ...] = ()) -> list[list[str]]:
    """Every command of the tree, found from click itself, so a new one cannot be missed."""
    paths = [list(path)]
    for name, command in sorted(subcommands(group).items()):
        if isinstance(command, click.Group):
            paths += command_paths(command, (*path, name))
        else:
            paths.append([*path, name])
    return paths


COMMANDS = command_paths(main)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "listserv")
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_the_help_test_sees_every_command() -> None:
    assert ["members", "import"] in COMMANDS and ["dkim", "keygen"] in COMMANDS
    assert len(COMMANDS) > 30


def test_a_command_imports_only_its_own_group() -> None:
    """`lists list` starts without loading the archive importer and its ingest path."""
    code = ("import sys; from listserv.cli import main; main.get_command(None, 'lists'); "
            "print(sorted(m for m in sys.modules if m.startswith('listserv.cli.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    assert loaded.strip() == "['listserv.cli.common', 'listserv.cli.lists']"


def test_each_group_lives_in_a_module_of_its_own() -> None:
    """The root module only assembles the tree: a newcomer finds `lists set` in
    `cli/lists.py`, and a group's module holds no other group's commands."""
    for name, command in subcommands(main).items():
        module = command.callback.__module__ if command.callback else ""
        assert module != "listserv.cli", f"{name} is defined in cli/__init__"
        if isinstance(command, click.Group):
            for sub in subcommands(command).values():
                assert sub.callback is not None
                assert sub.callback.__module__ in (module, "listserv.cli.personal"), sub.name


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("listserv, version ")


def test_admin_creates_a_list_and_sees_it(cli: Any, db: Any) -> None:
    result = cli("lists", "create", "living-with-als", "--title", "Living with ALS",
                 "--description", "Support for people living with ALS")
    assert result.exit_code == 0
    assert result.output == f"created {LIST}\n"
    (row,) = json.loads(cli("lists", "list", "--json").output)
    assert row["address"] == LIST
    assert row["title"] == "Living with ALS"
    assert row["members"] == 0
    shown = json.loads(cli("lists", "show", LIST, "--json").output)
    assert shown["description"] == "Support for people living with ALS"
    assert "title: Living with ALS" in cli("lists", "show", "living-with-als").output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lists", "create", "bad name!", "--title", "T"], "not a valid list name"),
        (["lists", "create", "x-request", "--title", "T"], "reserved suffix"),
        (["lists", "create", "living-with-als", "--title", "Again"], "already exists"),
        (["lists", "show", "nosuch"], "no such list: nosuch"),
        (["members", "add", "nosuch", "a@example.org"], "no such list"),
        (["members", "add", LIST, "not-an-address"], "is not an email address"),
        (["members", "add", LIST, "alice@example.org"], "already a member"),
        (["members", "add", LIST, "x@example.org", "--mode", "weekly"], "Invalid value"),
        (["members", "remove", LIST, "zed@example.org"], "is not a member"),
        (["members", "set", LIST, "alice@example.org"], "nothing to change"),
        (["show", "999"], "no such thread: 999"),
    ],
)
def test_errors_are_one_line_with_nonzero_exit(als: str, cli: Any, args: list[str],
                                               message: str) -> None:
    result = cli(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_members_add_list_set_remove(als: str, cli: Any) -> None:
    rows = json.loads(cli("members", "list", LIST, "--json").output)
    assert [(r["address"], r["mode"]) for r in rows] == [
        ("alice@example.org", "each"), ("bob@example.net", "each"),
        ("carol@example.com", "digest"), ("dave@example.org", "each"),
        ("erin@example.org", "nomail"),
    ]
    assert cli("members", "set", LIST, "bob@EXAMPLE.NET", "--mode", "digest").exit_code == 0
    assert cli("members", "remove", LIST, "erin@example.org").exit_code == 0
    rows = {r["address"]: r for r in json.loads(cli("members", "list", LIST, "--json").output)}
    assert rows["bob@example.net"]["mode"] == "digest"
    assert "erin@example.org" not in rows
    table = cli("members", "list", LIST).output.splitlines()
    assert table[0].split() == ["ADDRESS", "NAME", "MODE", "JOINED_AT"]


def test_a_list_gets_its_own_maximum_retry_age_and_goes_back_to_the_default(
        als: str, cli: Any) -> None:
    shown = json.loads(cli("lists", "show", LIST, "--json").output)
    assert (shown["max_retry_hours"], shown["max_retry_hours_default"]) == (120.0, True)

    result = cli("lists", "set", LIST, "--max-retry-hours", "24")
    assert result.exit_code == 0, result.output
    assert result.output == f"{LIST}: policy=members max_retry_hours=24\n"
    shown = json.loads(cli("lists", "show", LIST, "--json").output)
    assert (shown["max_retry_hours"], shown["max_retry_hours_default"]) == (24.0, False)
    assert "max_retry_hours: 24\n" in cli("lists", "show", LIST).output

    for bad in ("0", "-3", "soon", "nan", "inf", ""):
        refused = cli("lists", "set", LIST, "--max-retry-hours", bad)
        assert refused.exit_code == 1
        assert refused.output == (f"Error: invalid --max-retry-hours {bad!r}: "
                                  "give hours > 0, or 'default'\n")
    assert json.loads(cli("lists", "show", LIST, "--json").output)["max_retry_hours"] == 24.0

    back = cli("lists", "set", LIST, "--max-retry-hours", "default")
    assert back.output == f"{LIST}: policy=members max_retry_hours=120 (default)\n"
    assert json.loads(cli("lists", "show", LIST, "--json").output)["max_retry_hours_default"]
    assert "--max-retry-hours H|default" in cli("lists", "set", "--help").output


def test_import_reports_added_skipped_and_invalid_rows(als: str, cli: Any,
                                                       tmp_path: Path) -> None:
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(
        "address,name,mode\n"
        "frank@example.org,Frank Fox,digest\n"
        "alice@example.org,Alice again,each\n"
        "not-an-address,Nobody,each\n"
        "gina@example.org,Gina,sometimes\n"
        "hal@example.org\n"
    )
    result = cli("members", "import", LIST, str(csv_file), "--skip-bad")
    assert result.exit_code == 1
    assert "added 2, skipped 1, invalid 2" in result.output
    assert "line 4" in result.output and "line 5" in result.output
    rows = {r["address"]: r for r in json.loads(cli("members", "list", LIST, "--json").output)}
    assert rows["frank@example.org"]["mode"] == "digest"
    assert rows["hal@example.org"]["mode"] == "each"


def test_export_is_importable(als: str, cli: Any, tmp_path: Path) -> None:
    exported = cli("members", "export", LIST).output
    assert exported.splitlines()[0] == "address,name,mode"
    assert "carol@example.com,Carol Cole,digest" in exported
    cli("lists", "create", "copy", "--title", "Copy")
    path = tmp_path / "export.csv"
    path.write_text(exported)
    result = cli("members", "import", "copy", str(path))
    assert result.exit_code == 0
    assert "added 5, skipped 0, invalid 0" in result.output


def test_delete_asks_for_confirmation(als: str, cli: Any) -> None:
    refused = cli("lists", "delete", LIST, input="n\n")
    assert refused.exit_code != 0
    assert json.loads(cli("lists", "list", "--json").output) != []
    assert cli("lists", "delete", LIST, "--yes").exit_code == 0
    assert json.loads(cli("lists", "list", "--json").output) == []


def test_threads_and_show_read_like_a_forum(als: str, cli: Any, post: Any) -> None:
    post(make_message("Alice Archer <alice@example.org>", "Massage therapy?", "Does it help?",
                      message_id="q@x.org"))
    post(make_message("Bob Baker <bob@example.net>", "Re: Massage therapy?", "It does.",
                      message_id="a@x.org", in_reply_to="q@x.org"))
    (thread,) = json.loads(cli("threads", LIST, "--json").output)
    assert (thread["replies"], thread["posts"]) == (1, 2)
    table = cli("threads", LIST).output
    assert "Massage therapy?" in table
    shown = cli("show", str(thread["id"])).output
    assert shown.startswith("# Massage therapy?  (2 posts)")
    assert shown.index("Alice Archer <alice@example.org>") < shown.index("Bob Baker")
    assert "Does it help?" in shown and "It does." in shown
    data = json.loads(cli("show", str(thread["id"]), "--json").output)
    assert [p["author"] for p in data["posts"]] == ["alice@example.org", "bob@example.net"]


def test_listings_print_json_lists(als: str, cli: Any) -> None:
    for args in (["lists", "list"], ["members", "list", LIST], ["threads", LIST]):
        assert isinstance(json.loads(cli(*args, "--json").output), list)


def test_unknown_config_key_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[receiver]\nprot = 25\n')
    result = CliRunner().invoke(main, ["-c", str(path), "lists", "list"])
    assert result.exit_code != 0
    assert "unknown key receiver.prot" in result.output


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[delivery]\ntransport = "pigeon"\n', "delivery.transport"),
        ('[receiver]\nport = "25"\n', "receiver.port: expected int"),
        ('[lists]\ntimezone = "Mars/Olympus"\n', "lists.timezone"),
        ('[receiver]\ntrusted_relays = "127.0.0.1"\n',
         "receiver.trusted_relays: expected list of strings"),
        ('[receiver]\ntrusted_relays = ["postfix.example"]\n', "receiver.trusted_relays must"),
        ('[nonsense]\n', "unknown section [nonsense]"),
        ('not toml at all', "invalid TOML"),
    ],
)
def test_bad_config_values_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    result = CliRunner().invoke(main, ["-c", str(path), "lists", "list"])
    assert result.exit_code != 0
    assert message in result.output


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["-c", str(tmp_path / "nope.toml"), "lists", "list"])
    assert result.exit_code != 0
    assert "config file not found" in result.output


def test_config_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "env.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/env.db"\n')
    result = CliRunner().invoke(main, ["db", "init"], env={"LISTSERV_CONFIG": str(path)})
    assert result.exit_code == 0
    assert (tmp_path / "env.db").exists()
