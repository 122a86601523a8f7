"""What `lists set` and `members set` change, and the members CSV export.

Apart from `admin.lists` because `store.roles` imports that module's `AdminError`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from listserv.admin.lists import members, parse_limit, parse_retry_hours
from listserv.inbound import bounces as bouncing
from listserv.store import roles as listroles
from listserv.store.models import MailingList, Member

# The columns of a list that `change_list` may set.
LIST_SETTINGS = frozenset(
    {
        "max_retry_hours",
        "archive",
        "probation",
        "max_posts_per_day",
        "max_list_posts_per_day",
        "emergency",
    }
)


# How an option of `lists set` is read into its column; the others are taken as given.
_PARSERS: dict[str, Callable[[Any], Any]] = {
    "max_retry_hours": parse_retry_hours,
    "max_posts_per_day": lambda value: parse_limit("--max-posts-per-day", value),
    "max_list_posts_per_day": lambda value: parse_limit("--max-list-posts-per-day", value),
    "emergency": lambda value: value == "on",
}


def list_settings(given: Mapping[str, Any]) -> dict[str, Any]:
    """The columns the admin named (None: not named), each read from its option's text;
    AdminError names the option of a bad value."""
    return {
        column: _PARSERS.get(column, lambda value: value)(value)
        for column, value in given.items()
        if value is not None
    }


def change_list(
    session: Session,
    ml: MailingList,
    policy: str | None,
    roles: Iterable[tuple[str, str]],
    removed: Iterable[str],
    settings: Mapping[str, Any],
) -> None:
    """Apply `lists set`: take every role of `removed` away first, then add the (role,
    address) pairs, then set the policy and the given columns (`settings` holds only the
    ones the admin named, already parsed, so None there means "off" or "default")."""
    for addr in removed:
        listroles.remove_role(session, ml, addr, None)
    for role, addr in roles:
        listroles.add_role(session, ml, addr, role)
    if policy is not None:
        listroles.set_policy(session, ml, policy)
    for column, value in settings.items():
        if column not in LIST_SETTINGS:
            raise ValueError(f"not a list setting: {column}")
        setattr(ml, column, value)


@dataclass(frozen=True)
class MemberChanges:
    """What `members set` changes; None (False for `enable`) leaves a setting as it is."""

    mode: str | None = None
    name: str | None = None
    receive_own_posts: bool | None = None
    enable: bool = False
    digest_hour: int | None = None  # -1: when the list's digest is sent
    timezone: str | None = None

    def empty(self) -> bool:
        return self == MemberChanges()


def change_member(member: Member, changes: MemberChanges) -> None:
    """Apply `members set` to one member; `enable` resumes delivery with a clean score."""
    if changes.enable:
        bouncing.enable(member)
    if changes.mode is not None:
        member.mode = changes.mode
    if changes.name is not None:
        member.display_name = changes.name
    if changes.receive_own_posts is not None:
        member.receive_own_posts = changes.receive_own_posts
    if changes.digest_hour is not None:
        member.digest_hour = None if changes.digest_hour < 0 else changes.digest_hour
    if changes.timezone is not None:
        member.timezone = changes.timezone


def export_csv(session: Session, ml: MailingList) -> str:
    """The members as CSV rows of address,name,mode under a header, ready for import."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["address", "name", "mode"])
    for m in members(session, ml):
        writer.writerow([m.address, m.display_name, m.mode])
    return out.getvalue()
