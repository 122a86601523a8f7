"""The jinja2 environment for every text a person reads.

An admin's `templates/` folder next to the config file overrides the shipped templates,
which are found in the installed package or, in a source checkout, at the project root.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

from listserv.web.text import hide_addresses

PACKAGE_DIR = Path(__file__).resolve().parent


def shipped_templates() -> Path:
    installed = PACKAGE_DIR / "templates"
    return installed if installed.is_dir() else PACKAGE_DIR.parent / "templates"


def environment(config_dir: Path) -> Environment:
    """Autoescape on for HTML and XML (feeds), off for text; undefined names are errors,
    not blanks."""
    folders = [config_dir / "templates", shipped_templates()]
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(str(f)) for f in folders if f.is_dir()]),
        autoescape=select_autoescape(["html", "xml"], default_for_string=False, default=False),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
    )
    # Pages show subjects and file names as people wrote them, but never an address in them.
    env.filters["masked"] = hide_addresses
    return env
