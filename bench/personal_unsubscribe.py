"""What personal List-Unsubscribe costs: one post to N members, shared vs per-member SMTP.

Usage: python bench/personal_unsubscribe.py [MEMBERS] [PORT]
Needs Postfix's smtp-sink listening on 127.0.0.1:PORT (default 2525), e.g.
    smtp-sink -u nobody -c 127.0.0.1:2525 1000 &
Prints deliveries per second for each mode.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from common import ingest

from listserv.app import environment
from listserv.config import parse
from listserv.core.addresses import Route
from listserv.outbound.outbox import Outbox
from listserv.outbound.transports import SmtpRelay
from listserv.store.database import Database
from listserv.store.models import MailingList, Member

RAW = (b"From: Alice <alice@example.org>\r\nTo: l@lists.example.org\r\nSubject: Hello\r\n"
       b"Message-ID: <bench@example.org>\r\n\r\n" + b"Some text of a typical post.\r\n" * 40)


def run(members: int, port: int, personal: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        config = parse({
            "database": {"url": f"sqlite:///{tmp}/b.db"},
            "delivery": {"transport": "smtp", "host": "127.0.0.1", "port": port},
            "security": {"personal_unsubscribe": personal},
        }, Path(tmp))
        db = Database(config.database_url)
        db.create_schema()
        now = datetime.now(UTC)
        with db.session() as s:
            ml = MailingList(address="l@lists.example.org", title="L", digest_hour=7,
                             timezone="UTC", created_at=now)
            s.add(ml)
            s.flush()
            s.add_all(Member(list_id=ml.id, address=f"m{i}@example.net", joined_at=now)
                      for i in range(members))
            s.add(Member(list_id=ml.id, address="alice@example.org", joined_at=now))
        ingest(db, Route("list", "l@lists.example.org"), RAW, "alice@example.org", now,
               config.limits)
        relay = SmtpRelay("127.0.0.1", port, config.delivery.connections, 30)
        outbox = Outbox(db, config, relay, environment(Path(tmp)), lambda: now)

        async def drain() -> int:
            total = 0
            while n := await outbox.run_once():
                total += n
            await relay.close()
            return total

        start = time.perf_counter()
        sent = asyncio.run(drain())
        elapsed = time.perf_counter() - start
        db.dispose()
        if sent != members:
            raise SystemExit(f"only {sent} of {members} attempted: is smtp-sink on {port}?")
        return members / elapsed


def main() -> None:
    members = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 2525
    for personal in (False, True):
        rate = run(members, port, personal)
        label = "personal (one transaction each)" if personal else "shared transactions"
        print(f"{members} members, {label}: {rate:,.0f} deliveries/s")


if __name__ == "__main__":
    main()
