"""One way in for every inbound message: the recipients of one SMTP transaction grouped by
the role of their address, and one table from role to handler.

Every handler has the same signature, `receive(door, incoming, routes) -> Outcome`
(`inbound.incoming`): `door` is what the receiver holds (database, config, templates,
clock, the group-commit writer), `incoming` the message read once with its envelope,
`routes` the recipients of the handler's role. The receiver combines the outcomes into one
SMTP reply.
"""

from __future__ import annotations

from collections.abc import Sequence

from listserv.core.addresses import Route
from listserv.core.aliases import is_alias
from listserv.core.replies import Outcome, combine
from listserv.inbound import postmaster, posts, relay, reports, requests
from listserv.inbound.incoming import Door, Incoming, RoleHandler


def role_of(target: Route) -> str | None:
    """The handler role of one accepted recipient."""
    if target.kind == "postmaster":
        return "postmaster"
    if target.kind != "list":
        return None
    if target.role == "post":
        # Mail to an author's alias is relayed privately, unless it also went to the list.
        return "relay" if is_alias(target.detail) else "posts"
    if target.role in ("fbl", "bounces"):
        return "reports"
    if target.role in requests.ROLES:
        return "requests"
    return None


# Role -> handler, in the order they run for a message with recipients of several roles.
HANDLERS: dict[str, RoleHandler] = {
    "relay": relay.receive,
    "postmaster": postmaster.receive,
    "reports": reports.receive,
    "requests": requests.receive,
    "posts": posts.receive,
}


async def dispatch(door: Door, incoming: Incoming, routes: Sequence[Route]) -> Outcome:
    """Hand the message to the handler of each role among its recipients; one outcome.

    Mail only to authors' aliases is relayed privately and nothing else; when it also went
    to the list, the authors get it as a post like everyone else.
    """
    by_role: dict[str, list[Route]] = {}
    for target in routes:
        if (role := role_of(target)) is not None:
            by_role.setdefault(role, []).append(target)
    if "posts" in by_role:
        by_role.pop("relay", None)
    elif "relay" in by_role:
        by_role = {"relay": by_role["relay"]}
    return combine([await handle(door, incoming, by_role[role])
                    for role, handle in HANDLERS.items() if role in by_role])
