"""What an admin does to lists and members, one transaction per operation."""

from __future__ import annotations

import codecs
import csv
import io
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.config import Config
from listserv.core.addresses import AddressError, identity, list_address, normalize
from listserv.store.database import bulk_insert
from listserv.store.models import MODES, MailingList, Member, Thread, ThreadWish
from listserv.web import oneclick


class AdminError(ValueError):
    """An operation that cannot be done; the message is shown to the admin as is."""


def require_list(session: Session, address: str, domain: str) -> MailingList:
    try:
        canonical = list_address(address, domain)
    except AddressError:
        canonical = address.strip().lower()
    ml = session.scalar(select(MailingList).where(MailingList.address == canonical))
    if ml is None:
        raise AdminError(f"no such list: {address}")
    return ml


def list_summary(session: Session, ml: MailingList) -> dict[str, Any]:
    counts = dict(
        session.execute(
            select(Member.mode, func.count()).where(Member.list_id == ml.id).group_by(Member.mode)
        ).all()
    )
    return {
        "address": ml.address,
        "title": ml.title,
        "description": ml.description,
        "subject_prefix": ml.subject_prefix,
        "from_rewrite": ml.from_rewrite,
        "digest_hour": ml.digest_hour,
        "timezone": ml.timezone,
        "created_at": ml.created_at.isoformat(),
        "members": sum(counts.values()),
        "members_by_mode": {mode: counts.get(mode, 0) for mode in MODES},
    }


def parse_retry_hours(value: str) -> float | None:
    """`--max-retry-hours`: hours > 0, or "default" (None: follow [delivery] max_age_hours)."""
    if value.strip().lower() == "default":
        return None
    try:
        hours = float(value)
    except ValueError:
        hours = math.nan
    if not (math.isfinite(hours) and hours > 0):
        raise AdminError(f"invalid --max-retry-hours {value!r}: give hours > 0, or 'default'")
    return hours


def parse_limit(option: str, value: str) -> int | None:
    """A daily limit option: a whole number of posts > 0, or "off" (None: no limit)."""
    if value.strip().lower() == "off":
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise AdminError(f"invalid {option} {value!r}: give a number of posts > 0, or 'off'")
    return int(value)


def protection(ml: MailingList) -> dict[str, Any]:
    """What `lists set` and `lists show` say of probation, limits, the brake and sending."""
    return {
        "probation": ml.probation,
        "max_posts_per_day": ml.max_posts_per_day,
        "max_list_posts_per_day": ml.max_list_posts_per_day,
        "emergency": "on" if ml.emergency else "off",
        "sending": "paused" if ml.sending_paused else "on",
    }


def retry_setting(ml: MailingList, config: Config) -> dict[str, Any]:
    """What `lists show` says of the retry age: the hours in force and whether they are the
    global default."""
    own = ml.max_retry_hours
    return {"max_retry_hours": config.delivery.max_age_hours if own is None else own,
            "max_retry_hours_default": own is None}


def create_list(
    session: Session, config: Config, address: str, title: str, subject_prefix: str,
    description: str, now: datetime,
) -> MailingList:
    try:
        canonical = list_address(address, config.lists.domain)
    except AddressError as exc:
        raise AdminError(str(exc)) from exc
    if not title.strip():
        raise AdminError("a list needs a non-empty --title")
    if session.scalar(select(MailingList.id).where(MailingList.address == canonical)):
        raise AdminError(f"list {canonical} already exists")
    ml = MailingList(
        address=canonical,
        title=title.strip(),
        description=description,
        subject_prefix=subject_prefix.strip(),
        from_rewrite="always",
        digest_hour=config.lists.digest_hour,
        timezone=config.lists.timezone,
        created_at=now,
    )
    session.add(ml)
    session.flush()
    return ml


def delete_list(session: Session, ml: MailingList) -> None:
    session.delete(ml)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise AdminError(f"invalid mode {mode!r} (choose from {', '.join(MODES)})")
    return mode


def find_member(session: Session, ml: MailingList, address: str) -> Member | None:
    """The membership of this mailbox, however the address is spelled."""
    return session.scalar(
        select(Member).where(Member.list_id == ml.id,
                             func.lower(Member.address) == identity(address))
    )


def add_member(
    session: Session, ml: MailingList, address: str, name: str, mode: str, now: datetime
) -> Member:
    try:
        canonical = normalize(address)
    except AddressError as exc:
        raise AdminError(str(exc)) from exc
    check_mode(mode)
    if found := find_member(session, ml, canonical):
        same = "" if found.address == canonical else f" as {found.address}"
        raise AdminError(f"{canonical} is already a member of {ml.address}{same}")
    member = Member(list_id=ml.id, address=canonical, display_name=name.strip(), mode=mode,
                    receive_own_posts=False, joined_at=now)
    session.add(member)
    session.flush()
    return member


def require_member(session: Session, ml: MailingList, address: str) -> Member:
    try:
        canonical = normalize(address)
    except AddressError as exc:
        raise AdminError(str(exc)) from exc
    member = find_member(session, ml, canonical)
    if member is None:
        raise AdminError(f"{canonical} is not a member of {ml.address}")
    return member


def remove_member(session: Session, ml: MailingList, address: str, now: datetime) -> str:
    """End a membership as a leave does (counted in the report); the address removed."""
    member = require_member(session, ml, address)
    oneclick.remove(session, member, "unsubscribe", now)
    return member.address


def member_row(member: Member) -> dict[str, Any]:
    return {
        "address": member.address,
        "name": member.display_name,
        "mode": member.mode,
        "receive_own_posts": member.receive_own_posts,
        "joined_at": member.joined_at.isoformat(),
    }


def members(session: Session, ml: MailingList) -> Iterable[Member]:
    return session.scalars(
        select(Member).where(Member.list_id == ml.id).order_by(Member.address)
    )


# What a members CSV may be saved as: Excel writes "CSV UTF-8" with a BOM, "Unicode text"
# as UTF-16 with a BOM; its plain "CSV" is the Windows code page, which we refuse rather
# than guess, so no name is silently mangled.
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))


def decode_csv(data: bytes) -> str:
    """The text of a members file: UTF-8 (with or without BOM) or UTF-16 with a BOM."""
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise AdminError(f"line {line} is not {encoding.upper().removesuffix('-SIG')}: save "
                         "the file as CSV UTF-8 (or UTF-16 with a BOM)") from exc


@dataclass(frozen=True)
class ImportRow:
    line: int
    address: str
    name: str
    mode: str


def read_csv(text: str) -> tuple[list[ImportRow], list[str]]:
    """(good rows, one message per bad line) of address,name,mode rows; a header row is
    allowed. A quote left open swallows the rest of the file, so it stops the reading."""
    rows: list[ImportRow] = []
    invalid: list[str] = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    while True:
        number = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            reason = "unterminated quote" if "unexpected end" in str(exc) else str(exc)
            raise AdminError(f"line {number}: {reason}") from exc
        if not row or not "".join(row).strip():
            continue
        if number == 1 and row[0].strip().lower() in ("address", "email"):
            continue
        mode = (row[2].strip() if len(row) > 2 else "") or "each"
        try:
            address = normalize(row[0])
            check_mode(mode)
        except (AddressError, AdminError) as exc:
            invalid.append(f"line {number}: {exc}")
            continue
        rows.append(ImportRow(number, address, row[1].strip() if len(row) > 1 else "", mode))
    return rows, invalid


IMPORT_BATCH = 5_000  # rows per executemany: few round trips, bounded statement memory


def import_members(session: Session, ml: MailingList, rows: Sequence[ImportRow], now: datetime,
                   progress: Callable[[int, int], None] | None = None) -> tuple[int, list[str]]:
    """Add the rows' members: (how many were added, a line for each one already a member,
    in whatever case, on the list or earlier in the file).

    The list's identities are read in one query and the new rows inserted in batches, so
    100,000 members take seconds, not a query per row; the caller's one transaction keeps
    it all-or-nothing. `progress(done, total)` is called after each batch."""
    known = dict(session.execute(
        select(func.lower(Member.address), Member.address).where(Member.list_id == ml.id)
    ).all())
    skipped = []
    new: list[dict[str, Any]] = []
    for row in rows:
        key = identity(row.address)
        if (found := known.get(key)) is not None:
            skipped.append(f"line {row.line}: {found} is already a member")
            continue
        known[key] = row.address
        new.append({"list_id": ml.id, "address": row.address, "display_name": row.name,
                    "mode": row.mode, "receive_own_posts": False, "joined_at": now})
    for start in range(0, len(new), IMPORT_BATCH):
        batch = new[start:start + IMPORT_BATCH]
        bulk_insert(session, Member, batch)
        if progress is not None:
            progress(start + len(batch), len(new))
    return len(new), skipped


def set_thread_wish(session: Session, ml: MailingList, member: Member, thread_id: int,
                    wish: str | None, now: datetime) -> None:
    """Mute or follow one thread of the list for a member (`wish` None: neither)."""
    thread = session.get(Thread, thread_id)
    if thread is None or thread.list_id != ml.id:
        raise AdminError(f"{ml.address} has no thread {thread_id}")
    row = session.get(ThreadWish, (member.id, thread_id))
    if wish is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(ThreadWish(member_id=member.id, thread_id=thread_id, wish=wish,
                               created_at=now))
    else:
        row.wish = wish


def valid_timezone(name: str) -> bool:
    """Whether `name` is a time zone this machine knows (IANA, e.g. Europe/Berlin)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
