"""The pure core imports nothing that does I/O, so it can be tested with values alone."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "listserv"
PURE = ["addresses", "message", "threads", "policy", "replies", "compose", "robots", "replytext",
        "verp", "tokens", "commands", "notices", "unsubscribe", "digest", "signing",
        "complaints", "stats", "aliases", "dmarc", "web/text", "web/paths"]
FORBIDDEN = {"asyncio", "sqlalchemy", "smtplib", "socket", "os", "time", "aiosmtplib",
             "aiosmtpd", "subprocess", "random", "mailbox", "shutil", "urllib", "http"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_do_no_io(module: str) -> None:
    assert imported_modules(PACKAGE / f"{module}.py") & FORBIDDEN == set()
