"""Who runs a list and who may post: its posting policy and the roles of addresses on it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from listserv.admin.lists import AdminError
from listserv.config import Config
from listserv.core.addresses import AddressError, normalize, try_normalize
from listserv.store.database import insert_ignore
from listserv.store.models import POLICIES, ROLES, ListPolicy, ListRole, MailingList


def policy(session: Session, ml: MailingList) -> str:
    return session.scalar(select(ListPolicy.policy).where(ListPolicy.list_id == ml.id)) \
        or "members"


def set_policy(session: Session, ml: MailingList, value: str) -> None:
    if value not in POLICIES:
        raise AdminError(f"invalid policy {value!r} (choose from {', '.join(POLICIES)})")
    row = session.get(ListPolicy, ml.id)
    if row is None:
        session.add(ListPolicy(list_id=ml.id, policy=value))
    else:
        row.policy = value


def _canonical(address: str) -> str:
    try:
        return normalize(address)
    except AddressError as exc:
        raise AdminError(str(exc)) from exc


def add_role(session: Session, ml: MailingList, address: str, role: str) -> str:
    if role not in ROLES:
        raise AdminError(f"invalid role {role!r} (choose from {', '.join(ROLES)})")
    canonical = _canonical(address)
    insert_ignore(session, ListRole, [{"list_id": ml.id, "address": canonical, "role": role}])
    return canonical


def remove_role(session: Session, ml: MailingList, address: str, role: str | None) -> int:
    """Remove one role of an address, or all its roles when `role` is None."""
    query = delete(ListRole).where(ListRole.list_id == ml.id,
                                   ListRole.address == _canonical(address))
    if role is not None:
        query = query.where(ListRole.role == role)
    return session.execute(query).rowcount or 0  # type: ignore[attr-defined]


def role_rows(session: Session, ml: MailingList) -> list[dict[str, Any]]:
    rows = session.execute(
        select(ListRole.address, ListRole.role).where(ListRole.list_id == ml.id)
        .order_by(ListRole.role, ListRole.address)
    ).all()
    return [{"address": address, "role": role} for address, role in rows]


def owners(session: Session, ml: MailingList) -> list[str]:
    """The owners' addresses, in the order they were added."""
    return list(session.scalars(
        select(ListRole.address)
        .where(ListRole.list_id == ml.id, ListRole.role == "owner")
        .order_by(ListRole.id)
    ))


def site_owners(config: Config) -> list[str]:
    """`[bounces] owners`: who runs every list of this installation, each once."""
    found = (try_normalize(a) for a in config.bounces.owners.split(","))
    return list(dict.fromkeys(a for a in found if a))


def owners_and_site(session: Session, ml: MailingList, config: Config) -> list[str]:
    """The list's owners, then the installation's, each once."""
    return list(dict.fromkeys([*owners(session, ml), *site_owners(config)]))


def domain_owners(session: Session, domain: str) -> list[str]:
    """The owners of every list on `domain`, each once, in the order they were added."""
    return list(dict.fromkeys(session.scalars(
        select(ListRole.address)
        .join(MailingList, MailingList.id == ListRole.list_id)
        .where(ListRole.role == "owner", MailingList.address.like(f"%@{domain}"))
        .order_by(ListRole.id)
    )))
