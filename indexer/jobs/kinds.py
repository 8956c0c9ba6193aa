"""The table of job kinds: each is declared beside its code, and looked up here by name."""

from __future__ import annotations

from indexer.errors import InvalidRequest
from indexer.jobs.duplicates import DUPLICATES
from indexer.jobs.index import INDEX
from indexer.jobs.records import JobKind
from indexer.jobs.reindex import REINDEX

KINDS: dict[str, JobKind] = {kind.name: kind for kind in (INDEX, REINDEX, DUPLICATES)}


def kind_named(name: str) -> JobKind:
    """The kind a job row names; a row of a kind this version does not know is refused."""
    kind = KINDS.get(name)
    if kind is None:
        raise InvalidRequest(f"unknown job kind {name!r} (known: {', '.join(KINDS)})")
    return kind


def vector_writing_kinds() -> dict[str, JobKind]:
    """Kinds whose jobs write vectors (chunked), by name: never two at once on a collection's
    embedded stores, and none active while a backup reads them."""
    return {name: kind for name, kind in KINDS.items() if kind.chunked}
