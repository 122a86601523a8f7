"""A member's personal data on request: what we hold about them (GDPR articles 15 and
20), and forgetting them (article 17).

Everything a list holds keyed by the address is deleted, or keeps its place with the
address replaced by a random token; the address is also taken out of every stored copy of
mail (their own posts show as the former member's, others' quotes lose it). On SQLite the
file is then vacuumed, so no freed page still holds it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, func, or_, select, update
from sqlalchemy.orm import Session

from listserv.core import forgetting
from listserv.core.mbox import mboxrd as archive_entry
from listserv.store import search
from listserv.store.database import Database
from listserv.store.models import (
    Bounce,
    Delivery,
    DeliveryFailure,
    DigestRun,
    Held,
    ListRole,
    MailingList,
    Member,
    MemberEvent,
    Notice,
    Pending,
    Post,
    SignInRequest,
    WebSession,
)

CHUNK = 1000  # posts read at once while rewriting
# The member events the owners' report counts, address-less.
FORGOTTEN_KIND, EXPORT_KIND = "forgotten", "data-export"


class PersonalDataError(Exception):
    """A request that names no list or no one the list knows: one line for the CLI."""


@dataclass(frozen=True)
class Forgotten:
    """What forgetting did, without the address."""

    token: str
    posts: int
    records: int
    dropped_copies: int

    def as_dict(self) -> dict[str, object]:
        return {"posts": self.posts, "records": self.records, "dropped_copies": self.dropped_copies}


def forget(
    db: Database, list_address: str, address: str, now: datetime, *, erase_posts: bool = False
) -> Forgotten:
    """Remove `address` from the list and from everything the list stored about it, then
    compact the database file."""
    with db.transaction() as conn:
        done = forget_in(conn, list_address, address, now, erase_posts=erase_posts)
    compact(db)
    return done


def forget_in(
    conn: Connection, list_address: str, address: str, now: datetime, *, erase_posts: bool = False
) -> Forgotten:
    """Forgetting, in the caller's transaction (an emailed request confirmed by its token);
    `compact` the database once it is committed."""
    token = f"former-{secrets.token_hex(8)}@forgotten.invalid"
    same = func.lower(address)
    list_pk = conn.scalar(select(MailingList.id).where(MailingList.address == list_address))
    if list_pk is None:
        raise PersonalDataError(f"no such list: {list_address}")
    member_id = conn.scalar(
        select(Member.id).where(Member.list_id == list_pk, func.lower(Member.address) == same)
    )
    own = select(Post.id).where(Post.list_id == list_pk, func.lower(Post.author_address) == same)
    if member_id is None and conn.scalar(select(func.count()).select_from(own.subquery())) == 0:
        raise PersonalDataError(f"{address}: not a member of {list_address} and no post from them")
    dropped, records = _forget_deliveries(conn, list_pk, same, token)
    records += _forget_records(conn, list_pk, same, token)
    if member_id is not None:
        conn.execute(delete(Member).where(Member.id == member_id))
        records += 1
    conn.execute(
        MemberEvent.__table__.insert().values(
            list_id=list_pk,
            member_id=member_id or 0,
            address=token,
            kind=FORGOTTEN_KIND,
            at=now,
        )
    )
    # Signed in to the web archive: the requests and sessions name the address (the
    # archive's sign-in is not per list: forgetting signs the person out everywhere).
    for model, column in ((SignInRequest, SignInRequest.address),
                          (WebSession, WebSession.address)):
        records += conn.execute(delete(model).where(func.lower(column) == same)).rowcount
    posts = _rewrite_posts(conn, list_pk, address, token, erase_posts)
    _scrub_mail_copies(conn, list_pk, address, token)
    if posts:
        # The search index holds the words of their posts as they were: index them anew.
        search.reindex(conn, list_pk)
    return Forgotten(token, posts, records, dropped)


def _forget_deliveries(
    conn: Connection, list_pk: int, same: ColumnElement[str], token: str
) -> tuple[int, int]:
    """The list's mail to the address: the notices written to them deleted whole, queued
    copies dropped, the other deliveries renamed to the token; (dropped, records)."""
    in_list = or_(
        Delivery.post_id.in_(select(Post.id).where(Post.list_id == list_pk)),
        Delivery.notice_id.in_(select(Notice.id).where(Notice.list_id == list_pk)),
        Delivery.digest_id.in_(select(DigestRun.id).where(DigestRun.list_id == list_pk)),
    )
    mine = func.lower(Delivery.recipient) == same
    # Notices written to them (confirmations, the data export, sign-in links) are theirs
    # whole, sent or not, and an export's attachments are base64 that no byte scrub reads.
    theirs = conn.scalars(select(Delivery.notice_id).where(
        mine, Delivery.notice_id.in_(select(Notice.id).where(Notice.list_id == list_pk)))).all()
    dropped = conn.execute(
        delete(Delivery).where(mine, in_list, Delivery.status == "queued")
    ).rowcount
    conn.execute(delete(Delivery).where(Delivery.notice_id.in_(theirs)))
    records = conn.execute(delete(Notice).where(Notice.id.in_(theirs))).rowcount
    renamed = conn.execute(update(Delivery).where(mine, in_list).values(recipient=token))
    return dropped, records + renamed.rowcount


def _forget_records(conn: Connection, list_pk: int, same: ColumnElement[str], token: str) -> int:
    """The list's records of the address: history keeps its place under the token (bounces,
    failures, events), the rest (roles, pending confirmations, held mail, notices) goes."""
    records = 0
    for model, column in (
        (Bounce, Bounce.address),
        (DeliveryFailure, DeliveryFailure.recipient),
        (MemberEvent, MemberEvent.address),
    ):
        records += conn.execute(
            update(model)
            .where(model.list_id == list_pk, func.lower(column) == same)
            .values({column.key: token})
        ).rowcount
    for model, column in (
        (ListRole, ListRole.address),
        (Pending, Pending.address),
        (Held, Held.sender),
        (Held, Held.envelope_sender),
        (Notice, Notice.sender),
    ):
        records += conn.execute(
            delete(model).where(model.list_id == list_pk, func.lower(column) == same)
        ).rowcount
    return records


def _rewrite_posts(conn: Connection, list_pk: int, address: str, token: str, erase: bool) -> int:
    """Their posts become the former member's (text removed too when `erase`); other
    posts lose the address wherever it is quoted."""
    theirs, after = 0, 0
    while rows := conn.execute(
        select(Post.id, Post.author_address, Post.body, Post.new_text, Post.raw)
        .where(Post.list_id == list_pk, Post.id > after)
        .order_by(Post.id)
        .limit(CHUNK)
    ).all():
        after = rows[-1][0]
        theirs += sum(_rewrite(conn, row, address, token, erase) for row in rows)
    return theirs


def _rewrite(conn: Connection, row: Any, address: str, token: str, erase: bool) -> bool:
    """Rewrite one post if it is theirs or names them; whether it is theirs."""
    post_id, author, body, new_text, raw = row
    if author.lower() == address.lower():
        text = forgetting.REMOVED if erase else forgetting.scrub(body, address, token)
        conn.execute(
            update(Post)
            .where(Post.id == post_id)
            .values(
                author_address=token,
                author_name=forgetting.FORMER_MEMBER,
                body=text,
                new_text=forgetting.REMOVED
                if erase
                else forgetting.scrub(new_text, address, token),
                raw=forgetting.forgotten_post(raw, address, token, erase=erase),
            )
        )
        return True
    if address.encode().lower() in raw.lower() or address.lower() in body.lower():
        conn.execute(
            update(Post)
            .where(Post.id == post_id)
            .values(
                body=forgetting.scrub(body, address, token),
                new_text=forgetting.scrub(new_text, address, token),
                raw=forgetting.scrub_bytes(raw, address, token),
            )
        )
    return False


def _scrub_mail_copies(conn: Connection, list_pk: int, address: str, token: str) -> None:
    """Held messages and notices of others that name the address (a moderator's notice
    quoting them, a digest) keep their place without it."""
    needle = address.encode().lower()
    for model, column in ((Held, Held.raw), (Notice, Notice.payload)):
        for row_id, data in conn.execute(select(model.id, column).where(model.list_id == list_pk)):
            if needle in data.lower():
                conn.execute(
                    update(model)
                    .where(model.id == row_id)
                    .values({column.key: forgetting.scrub_bytes(data, address, token)})
                )
    for field in (
        DigestRun.text_head,
        DigestRun.text_tail,
        DigestRun.html_head,
        DigestRun.html_tail,
    ):
        for row_id, data in conn.execute(
            select(DigestRun.id, field).where(DigestRun.list_id == list_pk)
        ):
            if needle in data.lower():
                conn.execute(
                    update(DigestRun)
                    .where(DigestRun.id == row_id)
                    .values({field.key: forgetting.scrub_bytes(data, address, token)})
                )


def compact(db: Database) -> None:
    """SQLite keeps deleted rows in free pages and the write-ahead log until they are
    reused: rewrite the file and empty the log, so the address is gone from the disk."""
    if db.engine.dialect.name != "sqlite":
        return
    raw = db.engine.raw_connection()
    try:
        with db.writing():  # outside any transaction (the driver is in autocommit mode)
            raw.driver_connection.execute("VACUUM")  # type: ignore[union-attr]
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
    finally:
        raw.close()


def export_data(
    db: Database, list_address: str, address: str, domain: str, now: datetime
) -> tuple[dict[str, Any], bytes]:
    """What the list holds about `address` (GDPR articles 15 and 20): the facts as JSON
    data, and their posts as an mboxrd file; neither names anyone else."""
    with db.session() as session:
        return export_data_in(session, list_address, address, domain, now)


def export_data_in(
    session: Session, list_address: str, address: str, domain: str, now: datetime
) -> tuple[dict[str, Any], bytes]:
    """The export, in the caller's transaction (an emailed request confirmed by its token);
    it is counted in the owners' report, without the address."""
    same = func.lower(address)
    ml = session.scalar(select(MailingList).where(MailingList.address == list_address))
    if ml is None:
        raise PersonalDataError(f"no such list: {list_address}")
    member = session.scalar(
        select(Member).where(Member.list_id == ml.id, func.lower(Member.address) == same)
    )
    own = session.scalars(
        select(Post)
        .where(Post.list_id == ml.id, func.lower(Post.author_address) == same)
        .order_by(Post.received_at, Post.id)
    ).all()
    if member is None and not own:
        raise PersonalDataError(f"{address}: not a member of {list_address} and no post from them")
    data: dict[str, Any] = {
        "address": address.lower(),
        "list": ml.address,
        "exported_at": now.isoformat(),
        "membership": _membership(member),
        **_list_records(session, ml.id, same),
        **_web_records(session, same),
        "posts": [
            {"message_id": p.message_id, "subject": p.subject, "date": _iso(p.date)} for p in own
        ],
    }
    mbox = b"".join(
        archive_entry(
            p.author_address, p.received_at, forgetting.only_theirs(p.raw, address, domain)
        )
        for p in own
    )
    session.add(MemberEvent(list_id=ml.id, member_id=member.id if member else 0, address="",
                            kind=EXPORT_KIND, at=now))
    return data, mbox


def _membership(member: Member | None) -> dict[str, Any] | None:
    if member is None:
        return None
    return {
        "name": member.display_name,
        "mode": member.mode,
        "receive_own_posts": member.receive_own_posts,
        "joined_at": member.joined_at.isoformat(),
        "bounce_score": member.bounce_score,
        "delivery_disabled_at": _iso(member.disabled_at),
    }


def _list_records(
    session: Session, list_id: int, same: ColumnElement[str]
) -> dict[str, list[Any]]:
    """What the list keeps under the address besides membership and posts: roles, bounces,
    membership events, held messages."""
    roles = session.scalars(
        select(ListRole.role)
        .where(ListRole.list_id == list_id, func.lower(ListRole.address) == same)
    )
    bounces = session.scalars(
        select(Bounce)
        .where(Bounce.list_id == list_id, func.lower(Bounce.address) == same)
        .order_by(Bounce.received_at)
    )
    events = session.scalars(
        select(MemberEvent)
        .where(MemberEvent.list_id == list_id, func.lower(MemberEvent.address) == same)
        .order_by(MemberEvent.at)
    )
    held = session.scalars(
        select(Held).where(Held.list_id == list_id, or_(func.lower(Held.sender) == same,
                                                         func.lower(Held.envelope_sender) == same))
    )
    return {
        "roles": sorted(roles),
        "bounces": [
            {"received_at": b.received_at.isoformat(), "permanent": b.permanent,
             "status": b.status, "source": b.source}
            for b in bounces
        ],
        "membership_events": [{"kind": e.kind, "at": e.at.isoformat()} for e in events],
        "held_for_moderation": [
            {"subject": h.subject, "reason": h.reason, "received_at": h.received_at.isoformat()}
            for h in held
        ],
    }


def _web_records(session: Session, same: ColumnElement[str]) -> dict[str, list[Any]]:
    """The web archive's records of the address, kept for every list alike."""
    asked = session.scalars(
        select(SignInRequest).where(func.lower(SignInRequest.address) == same)
        .order_by(SignInRequest.at)
    )
    sessions = session.scalars(
        select(WebSession).where(func.lower(WebSession.address) == same)
        .order_by(WebSession.created_at)
    )
    return {
        "sign_ins": [{"asked_at": r.at.isoformat()} for r in asked],
        "web_sessions": [
            {"signed_in_at": w.created_at.isoformat(), "expires_at": w.expires_at.isoformat()}
            for w in sessions
        ],
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
