"""Fan-out throughput: one post to N members through the outbox to a local aiosmtpd sink.

Every member's copy is its own SMTP transaction (VERP sender), over `connections` reused
connections. Prints copies per second. Usage: python bench/fanout.py [MEMBERS] [CONNECTIONS]
The sink runs in the same process, so the figure is a lower bound for a real relay.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import insert

from listserv import admin, ingest
from listserv.addresses import Route
from listserv.config import parse
from listserv.db import Database
from listserv.models import Member
from listserv.outbox import Outbox
from listserv.templating import environment
from listserv.transports import SmtpRelay


class CountingSink:
    def __init__(self) -> None:
        self.copies = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.copies += len(envelope.rcpt_tos)
        return "250 2.0.0 queued"


async def main(members: int, connections: int) -> None:
    sink = CountingSink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(sink, decode_data=False), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        config = parse({
            "database": {"url": f"sqlite:///{Path(tmp) / 'bench.db'}"},
            "delivery": {"transport": "smtp", "port": port, "connections": connections},
        }, Path(tmp))
        db = Database(config.database_url)
        db.create_schema()
        now = datetime.now(UTC)
        with db.session() as s:
            ml = admin.create_list(s, config, "bench", "Bench", "", "", now)
            s.execute(insert(Member), [
                {"list_id": ml.id, "address": f"m{i}@example.org", "mode": "each",
                 "receive_own_posts": False, "joined_at": now, "display_name": ""}
                for i in range(members)
            ])
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "m0@example.org", ml.address, "Hello"
        msg["Message-ID"] = "<bench@example.org>"
        msg.set_content("A post of ordinary size.\n" * 40)
        ingest.receive(db, [Route("list", ml.address)], msg.as_bytes(), "m0@example.org",
                       config.limits, now)
        relay = SmtpRelay("127.0.0.1", port, connections)
        outbox = Outbox(db, config, relay, environment(config.base_dir), lambda: now)
        start = time.perf_counter()
        attempted = await outbox.run_once()
        elapsed = time.perf_counter() - start
        await relay.close()
        db.dispose()
    server.close()
    print(f"{sink.copies} of {members - 1} copies ({attempted} attempted) in {elapsed:.2f} s "
          f"over {connections} connections: {sink.copies / elapsed:.0f} copies/s")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000,
                     int(sys.argv[2]) if len(sys.argv) > 2 else 4))
