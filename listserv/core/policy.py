"""What happens to a message sent to a list: an ordered table of rules, first match wins.

Each rule is a small function of the parsed message and the facts the database knows,
returning a decision with a human-readable reason, or None to let the next rule look.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from listserv.core.commands import Command, Maybe
from listserv.core.message import Parsed
from listserv.core.replies import Outcome


@dataclass(frozen=True)
class Facts:
    """What the database knows that the decision needs; gathered before deciding."""

    list_address: str
    author_is_member: bool
    already_stored: bool
    # Why robots.robot_reason takes it for a machine (loops included), or None.
    robot: str | None = None
    # Why the From may not be its author (our front MTA's DMARC verdict), or None.
    author_forged: str | None = None
    # open | members | moderated | announce (models.POLICIES).
    posting_policy: str = "members"
    # The author's posts are held one by one (a member marked moderated).
    author_is_moderated: bool = False
    # The author may post to an announce list (an owner or approved poster).
    author_may_announce: bool = False
    # The emergency brake: every post of the list waits for a moderator.
    emergency: bool = False
    # Probation: a new member's first `probation` posts wait (0: off); `author_posts` is how
    # many of the author's posts the list holds, `author_trusted` ends probation early.
    probation: int = 0
    author_posts: int = 0
    author_trusted: bool = False
    # Daily limits (None: none) and the posts of the last 24 hours they count.
    max_posts_per_day: int | None = None
    author_posts_today: int = 0
    max_list_posts_per_day: int | None = None
    list_posts_today: int = 0
    # What the whole new text asks, when it is a command in plain words (commands.classify).
    plain_command: Command | Maybe | None = None


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str


Rule = Callable[[Parsed, Facts], Decision | None]


def no_sender(parsed: Parsed, facts: Facts) -> Decision | None:
    if parsed.author_address is None:
        return Decision(Outcome.NO_SENDER, "no usable From address")
    return None


def robot(parsed: Parsed, facts: Facts) -> Decision | None:
    if facts.robot:
        return Decision(Outcome.DROPPED, f"automatic message: {facts.robot}")
    return None


def duplicate(parsed: Parsed, facts: Facts) -> Decision | None:
    if facts.already_stored:
        return Decision(Outcome.DUPLICATE, f"Message-ID <{parsed.message_id}> already stored")
    return None


def forged_author(parsed: Parsed, facts: Facts) -> Decision | None:
    if facts.author_forged:
        return Decision(Outcome.HELD, facts.author_forged)
    return None


def emergency(parsed: Parsed, facts: Facts) -> Decision | None:
    if facts.emergency:
        return Decision(Outcome.HELD, "the list's emergency brake is on: every post waits"
                        " for a moderator")


def plain_command(parsed: Parsed, facts: Facts) -> Decision | None:
    found = facts.plain_command
    if isinstance(found, Command):
        return Decision(Outcome.COMMAND, f"not posted: taken as the command {found.text!r}")
    if isinstance(found, Maybe):
        what = f" ({found.command.text!r})" if found.command else ""
        return Decision(Outcome.HELD, f"possibly a command{what} rather than a post: "
                        "a moderator decides")
    return None


def announce(parsed: Parsed, facts: Facts) -> Decision | None:
    if facts.posting_policy != "announce":
        return None
    if facts.author_may_announce:
        return Decision(Outcome.ACCEPTED, f"announcement from {parsed.author_address}")
    return Decision(Outcome.REJECTED, f"{parsed.author_address} may not post to an"
                    " announce-only list")


def moderated_list(parsed: Parsed, facts: Facts) -> Decision | None:
    if facts.posting_policy == "moderated":
        return Decision(Outcome.HELD, "every post to this list is moderated")
    return None


def moderated_member(parsed: Parsed, facts: Facts) -> Decision | None:
    if facts.author_is_moderated:
        return Decision(Outcome.HELD, f"posts from {parsed.author_address} are moderated")
    return None


def non_member(parsed: Parsed, facts: Facts) -> Decision | None:
    if not facts.author_is_member and facts.posting_policy != "open":
        return Decision(Outcome.HELD, f"{parsed.author_address} is not a member")
    return None


def probation(parsed: Parsed, facts: Facts) -> Decision | None:
    if (facts.author_is_member and not facts.author_trusted
            and facts.author_posts < facts.probation):
        return Decision(Outcome.HELD, f"{parsed.author_address} is a new member: their first"
                        f" {facts.probation} posts wait for a moderator (this is post"
                        f" {facts.author_posts + 1})")
    return None


def daily_limits(parsed: Parsed, facts: Facts) -> Decision | None:
    if facts.max_posts_per_day is not None and \
            facts.author_posts_today >= facts.max_posts_per_day:
        return Decision(Outcome.HELD, f"{parsed.author_address} already posted"
                        f" {facts.author_posts_today} times in the last 24 hours (the limit"
                        f" is {facts.max_posts_per_day} a day)")
    if facts.max_list_posts_per_day is not None and \
            facts.list_posts_today >= facts.max_list_posts_per_day:
        return Decision(Outcome.HELD, f"the list had {facts.list_posts_today} posts in the"
                        f" last 24 hours (its limit is {facts.max_list_posts_per_day} a day)")
    return None


def member(parsed: Parsed, facts: Facts) -> Decision | None:
    who = "member" if facts.author_is_member else "non-member (open list)"
    return Decision(Outcome.ACCEPTED, f"post from {who} {parsed.author_address}")


RULES: tuple[Rule, ...] = (
    no_sender,   # nobody to credit or answer: refuse at SMTP time, the sender's MTA tells them
    robot,       # our own mail coming back, vacation notices, DSNs: never posted or answered
    duplicate,   # the same Message-ID again (a retry after a lost 250): accept, store once
    forged_author,  # a From failing its domain's DMARC may be anyone: a moderator decides
    plain_command,  # "please remove me" to the list: that command, asked to confirm
    emergency,   # the emergency brake: every post waits, announcements included
    announce,    # announce lists: owners and approved posters only, others refused at SMTP
    moderated_list,    # moderated lists: every post waits for a moderator
    moderated_member,  # members marked moderated wait for a moderator
    non_member,  # strangers wait for a moderator, unless the list is open
    probation,   # a new member's first posts wait, until a moderator trusts them
    daily_limits,  # beyond a member's or the list's posts per day: held, never lost
    member,      # members post (and anyone, on an open list)
)


def decide(parsed: Parsed, facts: Facts, rules: tuple[Rule, ...] = RULES) -> Decision:
    for rule in rules:
        decision = rule(parsed, facts)
        if decision is not None:
            return decision
    raise AssertionError("the last rule always decides")
