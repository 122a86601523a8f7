"""The tables, by what they hold. State lives in rows so that every stage can be killed and
resumed. Every table is imported here, so `Base.metadata` (create_all, alembic) sees them
all and `from listserv.store.models import X` works for each name."""

from listserv.store.models.base import Base, UTCDateTime
from listserv.store.models.delivery import (
    Bounce,
    Delivery,
    DeliveryFailure,
    DeliveryStatus,
    DigestRun,
    FanoutJob,
    Notice,
    OwnerReport,
    SourceKind,
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

# The row of each kind of source; its list_id is the list whose settings apply.
SOURCE_MODELS: dict[SourceKind, type[Post] | type[Notice] | type[DigestRun]] = {
    SourceKind.POST: Post, SourceKind.NOTICE: Notice, SourceKind.DIGEST: DigestRun,
}

__all__ = [
    "ARCHIVES",
    "MODES",
    "POLICIES",
    "ROLES",
    "SOURCE_MODELS",
    "Base",
    "Bounce",
    "Delivery",
    "DeliveryFailure",
    "DeliveryStatus",
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
    "SourceKind",
    "Thread",
    "ThreadEvent",
    "ThreadWish",
    "UTCDateTime",
    "UsedToken",
    "WebSession",
    "not_paused",
]
