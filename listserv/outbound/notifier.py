"""Queue notices for one list inside the caller's transaction: render, cap, compose, queue.

Answers to incoming mail (confirmations, welcomes, help, held and rejection notes) are
capped per recipient and day, so a mail loop with an auto-responder that escapes robot
detection still ends after a few messages. Moderator notices are not answers and are not
capped.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from jinja2 import Environment
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.config import Config
from listserv.core import notices
from listserv.core.addresses import role_address
from listserv.store.models import Delivery, MailingList, Notice

log = logging.getLogger(__name__)

# Notice kinds that answer a message and so count against the daily cap of the recipient.
ANSWER_KINDS = ("confirm", "welcome", "goodbye", "help", "results", "refused", "held",
                "rejected", "expired", "moderation", "not-posted", "which-thread")


def answers_today(session: Session, recipient: str, now: datetime) -> int:
    return session.scalar(
        select(func.count())
        .select_from(Delivery)
        .join(Notice, Notice.id == Delivery.notice_id)
        .where(Delivery.recipient == recipient, Notice.kind.in_(ANSWER_KINDS),
               Notice.created_at > now - timedelta(days=1))
    ) or 0


def queue_notice(
    session: Session, *, kind: str, sender: str, recipient: str, payload: bytes,
    now: datetime, list_id: int | None = None,
) -> Notice:
    """Queue a message composed for one person, in the caller's transaction."""
    notice = Notice(list_id=list_id, kind=kind, sender=sender, payload=payload, created_at=now)
    session.add(notice)
    session.flush()
    session.add(Delivery(notice_id=notice.id, recipient=recipient, status="queued", attempts=0,
                         next_attempt_at=now, created_at=now))
    return notice


class Notifier:
    """Notices from one list, queued in the session of the change they report."""

    def __init__(self, session: Session, config: Config, templates: Environment,
                 ml: MailingList, now: datetime) -> None:
        self.session = session
        self.config = config
        self.templates = templates
        self.ml = ml
        self.now = now

    def context(self) -> dict[str, Any]:
        """What every template may use about the list."""
        ml = self.ml
        return {
            "title": ml.title,
            "description": ml.description,
            "list_address": ml.address,
            "request_address": role_address(ml.address, "request"),
            "join_address": role_address(ml.address, "join"),
            "leave_address": role_address(ml.address, "leave"),
            "owner_address": role_address(ml.address, "owner"),
            "confirm_days": self.config.security.confirm_days,
            "max_days": self.config.moderation.held_max_days,
        }

    def may_answer(self, recipient: str) -> bool:
        return answers_today(self.session, recipient, self.now) < \
            self.config.security.notices_per_day

    def send(
        self, kind: str, template: str, recipient: str, *, in_reply_to: str | None = None,
        reply_to: str | None = None, attachments: tuple[tuple[str, str, bytes], ...] = (),
        **values: Any,
    ) -> bool:
        """Queue one notice; False when the recipient had their answers for today."""
        if kind in ANSWER_KINDS and not self.may_answer(recipient):
            log.warning("not answering %s (%s): %d notices in the last day", recipient, kind,
                        self.config.security.notices_per_day)
            return False
        rendered = self.templates.get_template(template).render({**self.context(), **values})
        notice = notices.compose(
            rendered=rendered,
            template_name=template,
            from_name=self.ml.title,
            from_address=role_address(self.ml.address, "request"),
            envelope_sender=role_address(self.ml.address, "bounces"),
            recipient=recipient,
            list_id=self.ml.list_id,
            loop_value=self.ml.address,
            message_id=f"{uuid.uuid4().hex}@{self.ml.domain}",
            now=self.now,
            in_reply_to=in_reply_to,
            reply_to=reply_to,
            auto="auto-replied" if kind in ANSWER_KINDS else "auto-generated",
            attachments=attachments,
        )
        queue_notice(self.session, kind=kind, sender=notice.sender,
                            recipient=notice.recipient, payload=notice.payload, now=self.now,
                            list_id=self.ml.id)
        return True
