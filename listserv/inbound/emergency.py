"""Raw copies of messages an unexpected error refused, capped so they cannot fill the disk."""

from __future__ import annotations

import mailbox
import os
from pathlib import Path

from listserv.config import LimitsConfig


def _usage(folder: Path) -> tuple[int, int]:
    """How many copies the Maildir holds, and their bytes."""
    copies = size = 0
    for sub in ("tmp", "new", "cur"):
        try:
            entries = list(os.scandir(folder / sub))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                copies += 1
                size += entry.stat(follow_symlinks=False).st_size
    return copies, size


def save(folder: Path, raw: bytes, limits: LimitsConfig) -> str:
    """Keep the bytes of a message a bug refused, so even a bug loses nothing, within
    `[limits] max_emergency_copies` and `max_emergency_bytes`; where it went, or why not.

    The client was answered 451 and keeps the message: a copy skipped at the cap loses
    nothing, it only spares the disk a copy per retry.
    """
    try:
        copies, size = _usage(folder)
        if copies >= limits.max_emergency_copies:
            return f"not saved ({copies} emergency copies already, the cap)"
        if size + len(raw) > limits.max_emergency_bytes:
            return (
                f"not saved ({size} bytes of emergency copies already, cap "
                f"{limits.max_emergency_bytes})"
            )
        folder.parent.mkdir(parents=True, exist_ok=True)
        return str(folder / "new" / mailbox.Maildir(folder, create=True).add(raw))
    except OSError as exc:
        return f"not saved ({exc.strerror or exc})"
