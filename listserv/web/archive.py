"""The archive's reading pages: the lists, a list's threads, a thread, a permalink, search.
Server-rendered HTML, no script; every page reachable from `/`. Who may read is `Site`'s
guard (`on_list`, `on_row`)."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.app import App
from listserv.store import search
from listserv.store.models import MailingList, Post, Thread
from listserv.web import reading, text
from listserv.web.site import Site, Visit, number, page_number, see_other

POSTS_PER_SEARCH = 20


class Archive(Site):
    def __init__(self, app: App) -> None:
        super().__init__(app)
        # One small style sheet, an admin's templates/web/style.css first.
        loader = self.templates.loader
        assert loader is not None
        self.css = loader.get_source(self.templates, "web/style.css")[0].encode()

    async def style(self, request: web.Request) -> web.Response:
        return web.Response(body=self.css, content_type="text/css",
                            headers={"Cache-Control": "public, max-age=86400"})

    async def index(self, request: web.Request) -> web.StreamResponse:
        def work(session: Session, visit: Visit) -> web.StreamResponse:
            cards = reading.lists(session, visit.reader)
            visit.public = visit.reader.address is None
            return self.page(visit, "web/lists.html", cards=cards, name=self.name, when=self.when)

        return await self.run(request, work)

    async def threads(self, request: web.Request) -> web.StreamResponse:
        page = page_number(request)

        def work(session: Session, visit: Visit, ml: MailingList) -> web.StreamResponse:
            rows, more = reading.threads(session, ml, page)
            return self.page(
                visit, "web/threads.html", ml=ml, rows=rows, page=page, more=more,
                base=f"/{self.name(ml)}/", when=self.when, plural=text.plural,
                held=reading.held_count(session, visit.reader, ml),
            )

        return await self.on_list(request, work)

    async def thread(self, request: web.Request) -> web.StreamResponse:
        def work(session: Session, visit: Visit, ml: MailingList,
                 thread: Thread) -> web.StreamResponse:
            posts, authors = reading.thread_posts(session, ml, thread)
            return self.page(
                visit, "web/thread.html", ml=ml, thread=thread, posts=posts, authors=authors,
                base=f"/{self.name(ml)}/", when=self.when, plural=text.plural, size=text.size,
                reply=reading.reply_address(ml, thread.id), reply_subject=f"Re: {thread.subject}",
            )

        return await self.on_row(request, Thread, number(request, "id"), work)

    async def permalink(self, request: web.Request) -> web.StreamResponse:
        def work(session: Session, visit: Visit, ml: MailingList,
                 post: Post) -> web.StreamResponse:
            response = see_other(f"/{self.name(ml)}/t/{post.thread_id}#p{post.id}")
            self.finish(visit, response)
            return response

        return await self.on_row(request, Post, number(request, "id"), work)

    async def search(self, request: web.Request) -> web.StreamResponse:
        query = request.query.get("q", "")[:200]
        page = page_number(request)

        def work(session: Session, visit: Visit, ml: MailingList) -> web.StreamResponse:
            ids = search.search(session.connection(), ml.id, query, POSTS_PER_SEARCH + 1,
                                (page - 1) * POSTS_PER_SEARCH)
            return self.page(
                visit, "web/search.html", ml=ml, query=query,
                results=_results(session, ml, query, ids[:POSTS_PER_SEARCH]), page=page,
                more=len(ids) > POSTS_PER_SEARCH, base=f"/{self.name(ml)}/", when=self.when,
            )

        return await self.on_list(request, work)


def _results(
    session: Session, ml: MailingList, query: str, ids: list[int]
) -> list[dict[str, object]]:
    """The found posts in rank order, each with its thread's subject, its author's name and
    a snippet of its own words (addresses hidden) with the query's words marked."""
    found = {p.id: p for p in session.scalars(select(Post).where(Post.id.in_(ids)))}
    subjects = dict(session.execute(
        select(Thread.id, Thread.subject)
        .where(Thread.id.in_({p.thread_id for p in found.values()}))).all())
    allowed = reading.own_addresses(ml)
    return [
        {
            "post": found[i],
            "subject": subjects.get(found[i].thread_id, ""),
            "author": text.author(found[i].author_name, found[i].author_address),
            "snippet": search.snippet(text.hide_addresses(found[i].new_text, allowed), query),
        }
        for i in ids
        if i in found
    ]
