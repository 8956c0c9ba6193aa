"""What archive writing and reading share: the report, the catalog's tables, the stores' roles, the locks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version

from sqlalchemy import Table

from indexer.catalog.models import Base
from indexer.library import Library

LOCK_TIMEOUT = 60.0  # seconds to wait for a collection's writer lock (workers hold it for one chunk's write)
ROW_BATCH = 1000
VECTOR_BATCH = 4096
ROLES = ("global", "patches")


@dataclass
class ArchiveReport:
    """What a backup, restore, export or import moved."""

    archive: str
    kind: str
    collections: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    vectors: dict[str, int] = field(default_factory=dict)  # "<collection>.<role>" -> count

    def to_json(self) -> dict:
        return {"archive": self.archive, "kind": self.kind, "collections": self.collections, "rows": self.rows,
                "vectors": self.vectors}


def dinoseek_version() -> str:
    """The installed dinoseek's version, recorded in every archive."""
    return version("dinoseek")


def catalog_tables() -> list[Table]:
    """Every catalog table, parents before children."""
    return Base.metadata.sorted_tables


def database_name(library: Library) -> str:
    """The catalog's URL without its password, for messages."""
    return library.catalog.engine.url.render_as_string(hide_password=True)


@contextmanager
def writer_locks(library: Library, names: list[str]) -> Iterator[None]:
    """Hold the writer locks of these collections, taken in one order everywhere (two backups never deadlock)."""
    with ExitStack() as stack:
        for name in sorted(set(names)):
            stack.enter_context(library.writer_lock(name, timeout=LOCK_TIMEOUT))
        yield
