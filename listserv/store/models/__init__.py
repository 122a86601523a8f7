"""The tables, by what they hold. State lives in rows so that every stage can be killed and
resumed. Every table is imported here, so `Base.metadata` (create_all, alembic) sees them
all and `from listserv.store.models import X` works for each name."""

from listserv.store.models.base import Base, UTCDateTime
from listserv.store.models.delivery import (
    Bounce,
    Delivery,
    DeliveryFailure,
    DigestRun,
    FanoutJob,
    Notice,
    OwnerReport,
)
from listserv.store.models.lists import (
    ARCHIVES,
    MODES,
    POLICIES,
    ROLES,
    ListPolicy,
    ListRole,
    MailingList,
    Member,
    MemberEvent,
    Pending,
    Setting,
    ThreadWish,
    UsedToken,
    not_paused,
)
from listserv.store.models.posts import Held, Post, Thread, ThreadEvent
from listserv.store.models.web import SignInRequest, WebSession

__all__ = [
    "ARCHIVES",
    "MODES",
    "POLICIES",
    "ROLES",
    "Base",
    "Bounce",
    "Delivery",
    "DeliveryFailure",
    "DigestRun",
    "FanoutJob",
    "Held",
    "ListPolicy",
    "ListRole",
    "MailingList",
    "Member",
    "MemberEvent",
    "Notice",
    "OwnerReport",
    "Pending",
    "Post",
    "Setting",
    "SignInRequest",
    "Thread",
    "ThreadEvent",
    "ThreadWish",
    "UTCDateTime",
    "UsedToken",
    "WebSession",
    "not_paused",
]
