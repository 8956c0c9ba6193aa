"""Scratch PostgreSQL databases for tests that need a catalog of their own (restores, the fleet):
created with a unique name on the test server, dropped afterwards. The shared database ``test``
that other tests wipe is never touched."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from indexer.catalog.database import normalize_url


class ScratchDatabases:
    """``create()`` makes a new empty database next to ``base_url``'s and returns its URL;
    ``drop_all()`` drops every one it made (closing what is still connected)."""

    def __init__(self, base_url: str, prefix: str) -> None:
        self.base = make_url(normalize_url(base_url))
        self.prefix = prefix
        self.names: list[str] = []

    def _admin(self):
        return create_engine(self.base.set(database="postgres"), isolation_level="AUTOCOMMIT")

    def create(self) -> str:
        name = f"{self.prefix}_{uuid.uuid4().hex[:12]}"
        engine = self._admin()
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        self.names.append(name)
        return self.base.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        engine = self._admin()
        try:
            with engine.connect() as conn:
                for name in self.names:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            engine.dispose()
        self.names.clear()


@contextmanager
def scratch_databases(base_url: str, prefix: str) -> Iterator[ScratchDatabases]:
    databases = ScratchDatabases(base_url, prefix)
    try:
        yield databases
    finally:
        databases.drop_all()
