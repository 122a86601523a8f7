"""Why a digest copy is joined from shared bytes rather than written by `EmailMessage`:
one reader's copy of a large digest both ways, in the same run. Prints figures:

    python bench/mime_writing.py [copies]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP

from listserv.core import digest
from listserv.core.compose import ListInfo

# A busy day: about 400 KiB of text and the same as HTML, with a little non-ASCII.
TEXT = "Does massage therapy help to maintain overall function? Thérapie, Übung.\n" * 5700
HTML = "<p>" + TEXT.replace("\n", "</p>\n<p>") + "</p>"
INFO = ListInfo("als@lists.example.org", "Living with ALS")
SHARED = digest.Shared(1, "Living with ALS digest", datetime.now(UTC), digest.qp(TEXT), b"",
                       digest.qp(HTML), b"")


def joined() -> bytes:
    """What the outbox does: the body encoded once per run, each copy joined around it."""
    return digest.message(INFO, SHARED, "carol@example.com", "d.1.1@lists.example.org",
                          "Leave: mailto:x", "<p>Leave</p>", "")


def email_message() -> bytes:
    """The standard library writing the same copy, its body encoded for each reader."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "Living with ALS <als-request@lists.example.org>"
    msg["To"] = "carol@example.com"
    msg["Subject"] = "Living with ALS digest"
    msg.set_content(TEXT + "Leave: mailto:x\n", cte="quoted-printable")
    msg.add_alternative(HTML + "<p>Leave</p>", subtype="html", cte="quoted-printable")
    return msg.as_bytes()


def per_copy(write: Callable[[], bytes], copies: int) -> tuple[float, int]:
    write()
    start = time.perf_counter()
    for _ in range(copies):
        size = len(write())
    return (time.perf_counter() - start) / copies, size


def main(copies: int) -> None:
    for write in (joined, email_message):
        seconds, size = per_copy(write, copies)
        print(f"{write.__name__:14} {seconds * 1000:8.2f} ms per copy ({size // 1024} KiB)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
