"""Archive import: messages per second and peak RSS of `listserv archive import`.

Writes a synthetic mbox of N messages in realistic threads (a root and its replies, with
In-Reply-To and References, quoted text, a share of multipart and non-ASCII messages,
"From " lines in bodies, some without Message-ID), then imports it into a scratch database
with the CLI in a subprocess, so the RSS read is the importer's own. Not part of the suite.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from common import LIST, machine, scratch_database, scratch_dir, seed_list, write_config

from listserv.core import mbox

NAMES = ["Alice Archer", "Björn Ødegård", "王小明", "Frank Fischer", "Ана Петрова", "Sam"]


def write_mbox(path: Path, n: int, seed: int = 15) -> None:
    """N messages in threads of 1 to 30 posts, written one at a time (mboxrd)."""
    rng = random.Random(seed)
    when = datetime(2015, 1, 1, tzinfo=UTC)
    open_threads: list[tuple[str, list[str]]] = []  # (subject, message ids)
    with path.open("wb") as out:
        for i in range(n):
            when += timedelta(minutes=rng.randint(1, 90))
            name = rng.choice(NAMES)
            msg = EmailMessage()
            msg["From"] = f"{name} <user{rng.randint(0, 2000)}@example.org>"
            msg["Date"] = format_datetime(when)
            if not open_threads or rng.random() < 0.15:
                subject = f"Topic {i}: {rng.choice(['ramps', 'speech', '介護', 'sleep'])}"
                open_threads.append((subject, []))
                if len(open_threads) > 40:
                    open_threads.pop(0)
                thread = open_threads[-1]
            else:
                thread = rng.choice(open_threads)
            subject, ids = thread
            msg["Subject"] = f"Re: {subject}" if ids else subject
            if ids:
                parent = rng.choice(ids)
                msg["In-Reply-To"] = f"<{parent}>"
                msg["References"] = " ".join(f"<{m}>" for m in ids[-5:])
            mid = f"bench{i}@archive.example"
            if rng.random() > 0.02:
                msg["Message-ID"] = f"<{mid}>"
                ids.append(mid)
            text = (
                f"Message {i} from {name}.\n"
                + "Some words of the post. " * rng.randint(2, 40)
                + "\nFrom here on, a line an mbox must quote.\n\n> quoted reply\n" * 2
            )
            msg.set_content(text)
            if rng.random() < 0.2:
                msg.add_alternative(f"<p>{text}</p>", subtype="html")
            out.write(mbox.separator("someone@example.org", when))
            for line in bytes(msg).splitlines(True):
                out.write(mbox.escape(line))
            out.write(b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with scratch_dir() as tmp, scratch_database(args.db, Path(tmp)) as url:
        source = Path(tmp) / "archive.mbox"
        start = time.perf_counter()
        write_mbox(source, args.messages)
        size = source.stat().st_size / 1e6
        print(
            f"wrote {args.messages} messages ({size:.0f} MB) in {time.perf_counter() - start:.0f} s"
        )
        seed_list(url, 0)
        config = write_config(Path(tmp), url, 2525, 2526)
        command = [
            sys.executable,
            "-m",
            "listserv",
            "-c",
            str(config),
            "archive",
            "import",
            LIST,
            str(source),
            "--json",
        ]
        for run in ("first import", "same file again"):
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, check=True)
            seconds = time.perf_counter() - start
            figures = json.loads(done.stdout)
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(
                f"{run}: {figures['imported']} imported, {figures['duplicates']} already "
                f"stored, {figures['refused']} refused in {seconds:.1f} s "
                f"({args.messages / seconds:.0f} messages/s), peak RSS so far {rss:.0f} MB"
            )


if __name__ == "__main__":
    main()
