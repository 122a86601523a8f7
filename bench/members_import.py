"""Members import: members per second of `listserv members import` beside a bare insert.

Writes a CSV of N members (names in several scripts, a share of addresses in mixed case and
of digest readers), runs the CLI on it in a subprocess into a fresh database holding the
bench list, then, as the same-run baseline, inserts the same rows into another fresh
database with the driver's own `executemany` in one transaction (no parsing, no checks).
Not part of the suite.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from common import LIST, machine, scratch_database, scratch_dir, seed_list, write_config
from sqlalchemy import create_engine, select

from listserv.store.models import MailingList

NAMES = ["Alice Archer", "Björn Ødegård", "王小明", "Frank Fischer", "Ана Петрова", "أمل حداد"]


def write_csv(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["address", "name", "mode"])
        for i in range(n):
            local = f"Member.{i}" if i % 7 == 0 else f"member{i}"
            mode = "digest" if i % 10 == 0 else "each"
            writer.writerow([f"{local}@Example{i % 50}.org", f"{NAMES[i % 6]} {i}", mode])


def cli_import(url: str, workdir: Path, source: Path) -> float:
    """Seconds of `listserv members import` into a fresh database holding the list."""
    seed_list(url, 0)
    config = write_config(workdir, url, 2525, 2526)
    command = [
        sys.executable,
        "-m",
        "listserv",
        "-c",
        str(config),
        "members",
        "import",
        LIST,
        str(source),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    print(f"  listserv: {done.stdout.strip()}")
    return seconds


def bare_insert(url: str, source: Path) -> float:
    """Seconds of the driver's executemany of the same rows, read from the same CSV."""
    seed_list(url, 0)
    engine = create_engine(url)
    with engine.connect() as conn:
        list_id = conn.scalar(select(MailingList.id).where(MailingList.address == LIST))
    mark = "?" if engine.dialect.name == "sqlite" else "%s"
    sql = (
        "INSERT INTO members (list_id, address, display_name, mode, receive_own_posts, "
        "joined_at, bounce_score, trusted) VALUES "
        f"({', '.join([mark] * 8)})"
    )
    now = datetime.now(UTC).replace(tzinfo=None)
    raw = engine.raw_connection()
    start = time.perf_counter()
    with source.open(encoding="utf-8", newline="") as rows:
        reader = csv.reader(rows)
        next(reader)
        params = [(list_id, a, n, m, False, now, 0.0, False) for a, n, m in reader]
    cursor = raw.cursor()
    cursor.executemany(sql, params)
    raw.commit()
    seconds = time.perf_counter() - start
    raw.close()
    engine.dispose()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--members", type=int, default=100_000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    n = args.members
    with scratch_dir() as tmp:
        source = Path(tmp) / "members.csv"
        write_csv(source, n)
        with scratch_dir() as one, scratch_database(args.db, Path(one)) as url:
            listserv = cli_import(url, Path(one), source)
        with scratch_dir() as two, scratch_database(args.db, Path(two)) as url:
            bare = bare_insert(url, source)
    print(
        f"listserv members import (CLI, process start included): {listserv:.2f} s, "
        f"{n / listserv:,.0f} members/s"
    )
    print(
        f"baseline: driver executemany of the same rows, one transaction: {bare:.2f} s, "
        f"{n / bare:,.0f} members/s"
    )
    print(f"ratio listserv/baseline: {bare / listserv:.2f}")


if __name__ == "__main__":
    main()
