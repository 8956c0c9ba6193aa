"""Duplicate groups: what a scan found, saved as the collection's groups, and read back a page at a time."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from indexer.catalog.models import DUPLICATE_KINDS, DuplicateEdge, DuplicateGroup, DuplicateMember, Image
from indexer.errors import InvalidRequest
from indexer.images import image_metadata
from indexer.library import Library

MAX_PAGE = 500
EDGE_BATCH = 1000  # judged pairs inserted per statement


@dataclass
class Group:
    """Images of one tier (``exact``, ``near``, ``similar``) with the weakest link's score and evidence."""

    kind: str
    image_ids: list[int]
    paths: list[str]
    score: float
    evidence: dict | None = None

    def to_json(self) -> dict:
        return {"kind": self.kind, "image_ids": self.image_ids, "paths": self.paths, "score": round(self.score, 6),
                "evidence": self.evidence}


@dataclass(frozen=True)
class JudgedEdge:
    """A pair with a verdict (``near`` or ``similar``), its two scores and its evidence."""

    a: int
    b: int
    verdict: str
    copy_probability: float
    descriptor: float
    evidence: dict


def replace_groups(s: Session, collection_id: int, groups: list[Group], threshold: float | None) -> None:
    """Replace the collection's saved groups with ``groups`` (``threshold``: the scan's near threshold)."""
    s.execute(delete(DuplicateGroup).where(DuplicateGroup.collection_id == collection_id))
    for g in groups:
        record = DuplicateGroup(collection_id=collection_id, kind=g.kind, score=g.score,
                                threshold=None if g.kind == "exact" else threshold, evidence=g.evidence)
        record.members = [DuplicateMember(image_id=i) for i in g.image_ids]
        s.add(record)


def save_groups(library: Library, collection_name: str, groups: list[Group], edges: list[JudgedEdge],
                threshold: float | None) -> None:
    """Replace the collection's saved groups with ``groups`` and its judged pairs with ``edges`` (what
    the last scan found; the review re-groups the edges when its thresholds move)."""
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        replace_groups(s, collection.id, groups, threshold)
        s.execute(delete(DuplicateEdge).where(DuplicateEdge.collection_id == collection.id))
        rows = [{"collection_id": collection.id, "a": e.a, "b": e.b, "verdict": e.verdict,
                 "copy_probability": e.copy_probability, "descriptor": e.descriptor, "evidence": e.evidence}
                for e in edges]
        for start in range(0, len(rows), EDGE_BATCH):
            s.execute(insert(DuplicateEdge), rows[start:start + EDGE_BATCH])


def saved_groups(library: Library, collection_name: str) -> list[Group]:
    """Every saved group of the collection, in the order the scan saved them."""
    out: list[Group] = []
    after = None
    while True:
        page, after = list_groups(library, collection_name, after=after, limit=MAX_PAGE)
        out += [Group(g["kind"], g["image_ids"], g["paths"], g["score"], g["evidence"]) for g in page]
        if after is None:
            return out


def list_groups(library: Library, collection_name: str, *, after: int | None = None, limit: int = 100,
                kind: str | None = None) -> tuple[list[dict], int | None]:
    """Saved groups in id order with their members' metadata (what a reviewer compares), a page at a
    time: ``after`` is the cursor (the last group id seen).
    Returns the page and the next cursor (None at the end)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be from 1 to {MAX_PAGE}, got {limit}")
    if kind is not None and kind not in DUPLICATE_KINDS:
        raise InvalidRequest(f"kind must be exact, near or similar, got {kind!r}")
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        query = select(DuplicateGroup).where(DuplicateGroup.collection_id == collection.id)
        if after is not None:
            query = query.where(DuplicateGroup.id > after)
        if kind is not None:
            query = query.where(DuplicateGroup.kind == kind)
        groups = list(s.scalars(query.order_by(DuplicateGroup.id).limit(limit + 1)))
        more = len(groups) > limit
        groups = groups[:limit]
        ids = [g.id for g in groups]
        members: dict[int, list[Image]] = {i: [] for i in ids}
        if ids:
            for group_id, image in s.execute(
                    select(DuplicateMember.group_id, Image).join(Image, Image.id == DuplicateMember.image_id)
                    .where(DuplicateMember.group_id.in_(ids)).order_by(Image.id)):
                members[group_id].append(image)
        page = [{"id": g.id, "kind": g.kind, "score": round(g.score, 6), "image_ids": [i.id for i in members[g.id]],
                 "paths": [i.path for i in members[g.id]], "evidence": g.evidence,
                 "metadata": [image_metadata(i) for i in members[g.id]]} for g in groups]
    return page, (ids[-1] if more else None)
