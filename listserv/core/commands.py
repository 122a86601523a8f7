"""Email commands into values: what a message to `LIST-request@` or a moderator's reply asks.

Commands are read from the Subject and then from the first lines of the body, the way
people write them ("subscribe", "digest on", "confirm TOKEN"); quoted text, signatures and
the rest of a reply are never read as commands. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Each command word with the arguments it accepts (None: any single word, e.g. a token).
COMMANDS: dict[str, tuple[str, ...] | None] = {
    "help": (),
    "subscribe": (),
    "unsubscribe": (),
    "digest": ("on", "off"),
    "nomail": ("on", "off"),
    "confirm": None,
    "export": (),  # one's personal data, by email once confirmed (GDPR articles 15, 20)
    "forget": (),  # to be forgotten, once confirmed (GDPR article 17)
}
ALIASES = {"join": "subscribe", "leave": "unsubscribe", "signoff": "unsubscribe",
           "info": "help", "?": "help"}
MODERATION_VERBS = ("approve", "reject", "discard")

MAX_BODY_LINES = 10  # lines of the body looked at for commands
_REPLY_PREFIX_RE = re.compile(r"^\s*((re|aw|sv|fw|fwd|tr)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


@dataclass(frozen=True)
class Command:
    name: str
    arg: str = ""

    @property
    def text(self) -> str:
        return f"{self.name} {self.arg}".strip()


def strip_reply_prefix(subject: str) -> str:
    return _REPLY_PREFIX_RE.sub("", subject).strip()


def parse_line(line: str) -> Command | None:
    """One command from one line, or None when the line is not a command."""
    words = line.strip().split()
    if not words:
        return None
    name = words[0].lower().rstrip(":")
    name = ALIASES.get(name, name)
    if name not in COMMANDS:
        return None
    allowed = COMMANDS[name]
    args = words[1:]
    if allowed is None:
        return Command(name, args[0]) if len(args) == 1 else None
    if not allowed:
        return Command(name) if not args else None
    if len(args) == 1 and args[0].lower() in allowed:
        return Command(name, args[0].lower())
    return None


def _body_lines(body: str) -> list[str]:
    """The first lines of the body that could be commands: up to quotes or a signature."""
    lines = []
    for line in body.splitlines():
        stripped = line.strip()
        if stripped.startswith(">") or line.rstrip() == "--" or line.startswith("-- "):
            break
        if stripped:
            lines.append(stripped)
        if len(lines) >= MAX_BODY_LINES:
            break
    return lines


def parse(subject: str, body: str) -> list[Command]:
    """The commands of a request: the Subject if it is one, then body lines until the first
    line that is not a command (so a chatty message costs nothing but one help answer)."""
    found: list[Command] = []
    first = parse_line(strip_reply_prefix(subject))
    if first is not None:
        found.append(first)
    for line in _body_lines(body):
        command = parse_line(line)
        if command is None:
            break
        if command not in found:
            found.append(command)
    return found


@dataclass(frozen=True)
class Moderation:
    verb: str  # approve | reject | discard
    reason: str = ""


def parse_moderation(subject: str, body: str) -> Moderation | None:
    """A moderator's answer: a verb starting the first body line, or the Subject. Only the
    first line counts, so an unquoted copy of our notice in a reply decides nothing."""
    for line in [*_body_lines(body)[:1], strip_reply_prefix(subject)]:
        word, _, rest = line.partition(" ")
        verb = word.lower().rstrip(":.,!")
        if verb in MODERATION_VERBS:
            return Moderation(verb, rest.strip() if verb == "reject" else "")
    return None
