"""The house rules a newcomer relies on: `core/` is pure, and no module imports in a cycle.

Every module under `listserv/core/` imports nothing that does I/O, only other core modules
(and `listserv.config`'s frozen dataclasses), relative imports included; nothing runs at
import time but definitions. The whole package has no import cycle, so each stage can be read
(and loaded) before the ones that build on it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "listserv"
CORE = sorted(p for p in (PACKAGE / "core").glob("*.py"))
# Pure modules that live beside their only users: a post's text as HTML, the archive's URLs.
PURE = [*CORE, PACKAGE / "web" / "text.py", PACKAGE / "web" / "paths.py"]
FORBIDDEN = {"asyncio", "sqlalchemy", "smtplib", "socket", "os", "time", "aiosmtplib",
             "aiosmtpd", "subprocess", "random", "mailbox", "shutil", "urllib", "http",
             "aiohttp", "dns", "dkim", "secrets", "threading", "logging", "pathlib",
             "sqlite3", "psycopg", "multiprocessing", "uvloop", "tempfile", "signal", "select"}
CORE_MAY_IMPORT = ("listserv.core", "listserv.config")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts if path.is_relative_to(
        PACKAGE.parent) else ("listserv", "core", path.stem)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under `if TYPE_CHECKING:`, which only type checkers import."""
    nodes: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        nodes.append(node)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return nodes


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved to absolute names."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names.add(module)
            # `from listserv.core import tokens` imports the module listserv.core.tokens
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("path", PURE, ids=lambda p: p.stem)
def test_core_modules_do_no_io(path: Path) -> None:
    imported = imports_of(path)
    assert {name.split(".")[0] for name in imported} & FORBIDDEN == set()
    ours = {name for name in imported if name.split(".")[0] == "listserv"}
    assert {n for n in ours if not n.startswith(CORE_MAY_IMPORT)} == set()


@pytest.mark.parametrize("path", PURE, ids=lambda p: p.stem)
def test_core_modules_only_define_at_import(path: Path) -> None:
    """Module level holds imports, definitions and constants; no call that changes the world
    (a patch of a library, a file read, a connection) may hide in an import."""
    allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef,
               ast.ClassDef, ast.Assign, ast.AnnAssign, ast.Expr, ast.If)
    for node in ast.parse(path.read_text()).body:
        assert isinstance(node, allowed), f"{path.name}:{node.lineno}"
        if isinstance(node, ast.Expr):  # only the docstring
            assert isinstance(node.value, ast.Constant), f"{path.name}:{node.lineno}"


def test_a_core_module_that_opens_a_socket_is_caught(tmp_path: Path) -> None:
    """The rule itself can fail: relative and absolute imports of I/O are both seen."""
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("from socket import create_connection\nfrom ..store import models\n")
    names = imports_of(sneaky)
    assert "socket" in {n.split(".")[0] for n in names}
    assert "listserv.store.models" in names


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in imports_of(path) if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
