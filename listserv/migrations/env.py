"""Alembic's entry point: migrate the connection that listserv.migrate hands over."""

from alembic import context

from listserv.migrate import configure

configure(context)
