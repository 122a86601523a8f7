"""How long the last step before sending takes per recipient: the member's own unsubscribe
token (the default), one-click links (`[web] base_url`: the post composed again for each
member) and the DKIM signature. Prints figures; run from a checkout:

    python bench/finishing.py [members]
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from listserv.app import environment
from listserv.config import parse
from listserv.outbound import keys
from listserv.outbound.finishing import Finisher
from listserv.outbound.signing import Signer
from listserv.store.database import Database
from listserv.store.models import FanoutJob, MailingList, Member, Post, Thread

BODY = ("Does massage therapy help to maintain overall function and muscle strength?\n" * 20)


def main(count: int) -> None:
    now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        config = parse({"database": {"url": f"sqlite:///{tmp}/b.db"},
                        "web": {"base_url": "https://lists.example.org"}}, Path(tmp))
        db = Database(config.database_url)
        db.create_schema()
        raw = (f"From: Alice <alice@example.org>\r\nTo: als@lists.example.org\r\n"
               f"Subject: Massage?\r\nMessage-ID: <q@example.org>\r\n"
               f"Date: Fri, 27 Nov 2026 09:00:00 +0000\r\n\r\n{BODY}").encode()
        with db.session() as s:
            ml = MailingList(address="als@lists.example.org", title="ALS", digest_hour=7,
                             timezone="UTC", created_at=now)
            s.add(ml)
            s.flush()
            s.add_all(Member(list_id=ml.id, address=f"m{i}@example.org", joined_at=now)
                      for i in range(count))
            thread = Thread(list_id=ml.id, subject="Massage?", subject_key="massage?",
                            started_at=now, last_activity=now, post_count=1)
            s.add(thread)
            s.flush()
            post = Post(list_id=ml.id, thread_id=thread.id, message_id="q@example.org",
                        author_address="alice@example.org", subject="Massage?",
                        received_at=now, body=BODY, raw=raw)
            s.add(post)
            s.flush()
            s.add(FanoutJob(post_id=post.id, created_at=now))
            post_id = post.id
        with db.session() as s:
            members: dict[str, int | None] = {
                address: member_id
                for address, member_id in s.execute(select(Member.address, Member.id))}
        pem, _ = keys.generate()
        signer = Signer("s", "lists.example.org", pem)
        templates = environment(Path(tmp))
        plain = parse({"database": {"url": config.database.url}}, Path(tmp))
        chunks = [dict(list(members.items())[i:i + 100]) for i in range(0, count, 100)]
        for label, cfg, sign in [("personal unsubscribe token", plain, None),
                                 ("  + DKIM signature", plain, signer),
                                 ("one-click links (web)", config, None),
                                 ("  + DKIM signature", config, signer)]:
            finisher = Finisher(db, cfg, templates, sign, lambda: now)
            with db.read() as s:  # composed once per post, as the outbox does
                post = s.get_one(Post, post_id)
                message = finisher.render(s, post, s.get_one(MailingList, post.list_id))
            start = time.process_time()
            for chunk in chunks:  # the outbox hands over recipients in batches
                finisher.finish_post(post_id, message, chunk)
            spent = time.process_time() - start
            print(f"{label:28s} {count} recipients: {spent:.2f} s CPU, "
                  f"{spent / count * 1000:.2f} ms per recipient")
        db.dispose()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
