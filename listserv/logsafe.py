"""Log lines that client input cannot forge or garble.

Addresses, HELO names, commands and header values reach our log lines (and aiosmtpd's);
a carriage return, a line feed, U+2028 or a terminal escape in them would start a line
that reads like one of ours, or rewrite the screen. The formatter every handler of
`serve` uses writes each such character as its Python escape (`\\r`, `\\u2028`,
`\\x1b`); letters of every script stay as they are.
"""

from __future__ import annotations

import logging


def printable(text: str) -> str:
    """`text` with every character that is not printable (controls, line and paragraph
    separators, format characters, lone surrogates) written as its escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


class EscapingFormatter(logging.Formatter):
    """One record, one line: the message line escaped; a traceback (ours) keeps its lines,
    with their other control characters escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def formatException(self, ei: logging._SysExcInfoType) -> str:
        return "\n".join(printable(line) for line in super().formatException(ei).split("\n"))
