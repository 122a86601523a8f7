"""A bare aiosmtpd server that answers 250 to everything and stores nothing: the baseline
the ingest benchmark compares with, and the fallback sink when smtp-sink is absent. It runs
on the event loop `listserv serve` runs on (uvloop), so the ratio measures our work alone."""

from __future__ import annotations

import asyncio
import sys

import uvloop
from aiosmtpd.smtp import SMTP, Envelope, Session


class Null:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 2.0.0 discarded"


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Null(), decode_data=False),
                                      "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
