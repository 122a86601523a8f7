"""Alembic's entry point: migrate the connection that listserv.store.migrate hands over."""

from alembic import context

from listserv.store.migrate import configure

configure(context)
