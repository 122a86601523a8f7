"""What an admin does to lists and members, one transaction per operation."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from .addresses import AddressError, list_address, normalize
from .config import Config
from .models import MODES, MailingList, Member


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
    return session.scalar(
        select(Member).where(Member.list_id == ml.id, Member.address == address)
    )


def add_member(
    session: Session, ml: MailingList, address: str, name: str, mode: str, now: datetime
) -> Member:
    try:
        canonical = normalize(address)
    except AddressError as exc:
        raise AdminError(str(exc)) from exc
    check_mode(mode)
    if find_member(session, ml, canonical):
        raise AdminError(f"{canonical} is already a member of {ml.address}")
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


def remove_member(session: Session, ml: MailingList, address: str) -> None:
    member = require_member(session, ml, address)
    session.execute(delete(Member).where(Member.id == member.id))


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


@dataclass
class ImportReport:
    added: int = 0
    skipped: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)


def import_members(
    session: Session, ml: MailingList, lines: Iterable[str], now: datetime
) -> ImportReport:
    """Rows of address,name,mode (a header row is allowed); every bad row is reported."""
    report = ImportReport()
    for number, row in enumerate(csv.reader(lines), start=1):
        if not row or not "".join(row).strip():
            continue
        if number == 1 and row[0].strip().lower() in ("address", "email"):
            continue
        address = row[0].strip()
        name = row[1].strip() if len(row) > 1 else ""
        mode = (row[2].strip() if len(row) > 2 else "") or "each"
        try:
            canonical = normalize(address)
            check_mode(mode)
        except (AddressError, AdminError) as exc:
            report.invalid.append(f"line {number}: {exc}")
            continue
        if find_member(session, ml, canonical):
            report.skipped.append(f"line {number}: {canonical} is already a member")
            continue
        add_member(session, ml, canonical, name, mode, now)
        report.added += 1
    return report
