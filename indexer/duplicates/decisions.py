"""A reviewer's decisions on duplicates, kept in the catalog: keep or discard an image, or mark a pair
"not a duplicate" — which keeps the two apart in the groups of every later scan and re-grouping.
A decision can be listed, exported (JSON or CSV) and undone."""

from __future__ import annotations

import csv
import io

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from indexer.catalog.models import DECISION_KINDS, Collection, DuplicateDecision, Image
from indexer.duplicates.grouping import pair
from indexer.duplicates.reference import in_reference_folders
from indexer.errors import InvalidRequest, NotFound
from indexer.library import Library

MAX_DECISIONS = 10_000  # decisions one request may record (a page of a keep rule's suggestions)
CSV_COLUMNS = ("id", "kind", "image_id", "path", "other_image_id", "other_path", "rule", "created_at")


def apart_pairs(s: Session, collection_id: int) -> set[tuple[int, int]]:
    """The collection's pairs marked "not a duplicate", smaller id first."""
    return {(a, b) for a, b in s.execute(select(DuplicateDecision.image_id, DuplicateDecision.other_image_id).where(
        DuplicateDecision.collection_id == collection_id, DuplicateDecision.kind == "not_duplicate"))}


def _json(d: DuplicateDecision, paths: dict[int, str]) -> dict:
    return {"id": d.id, "kind": d.kind, "image_id": d.image_id, "path": paths.get(d.image_id),
            "other_image_id": d.other_image_id, "other_path": paths.get(d.other_image_id) if d.other_image_id else None,
            "rule": d.rule, "created_at": d.created_at.isoformat() if d.created_at else None}


def _paths(s: Session, ids: set[int]) -> dict[int, str]:
    ids = {i for i in ids if i is not None}
    return dict(s.execute(select(Image.id, Image.path).where(Image.id.in_(sorted(ids)))).tuples().all()) if ids else {}


def _checked(s: Session, collection: Collection, decisions: list[dict]) -> list[tuple[str, int, int | None, str | None]]:
    """(kind, image_id, other_image_id, rule) of each decision, or InvalidRequest naming the first wrong one."""
    if not isinstance(decisions, list) or not decisions:
        raise InvalidRequest("decisions must be a non-empty list")
    if len(decisions) > MAX_DECISIONS:
        raise InvalidRequest(f"at most {MAX_DECISIONS} decisions a request, got {len(decisions)}")
    out = []
    for n, d in enumerate(decisions):
        kind, image_id, other = d.get("kind"), d.get("image_id"), d.get("other_image_id")
        if kind not in DECISION_KINDS:
            raise InvalidRequest(f"decisions[{n}].kind must be one of {', '.join(DECISION_KINDS)}, got {kind!r}")
        if (kind == "not_duplicate") != (other is not None):
            raise InvalidRequest(f"decisions[{n}]: other_image_id is needed by not_duplicate and by nothing else")
        if other is not None and other == image_id:
            raise InvalidRequest(f"decisions[{n}]: an image cannot be apart from itself ({image_id})")
        a, b = pair(image_id, other) if other is not None else (image_id, None)
        out.append((kind, a, b, d.get("rule")))
    ids = {i for _, a, b, _ in out for i in (a, b) if i is not None}
    found = dict(s.execute(select(Image.id, Image.path).where(Image.id.in_(sorted(ids)),
                                                             Image.collection_id == collection.id)).tuples().all())
    missing = sorted(ids - set(found))
    if missing:
        raise NotFound(f"no image {', '.join(map(str, missing[:10]))} in collection {collection.name!r}")
    protected = sorted(a for kind, a, _, _ in out if kind == "discard" and in_reference_folders(collection, found[a]))
    if protected:
        raise InvalidRequest(f"image {protected[0]} ({found[protected[0]]}) lies in a reference folder of "
                             f"{collection.name!r}: it is never discarded")
    return out


def add_decisions(library: Library, collection_name: str, decisions: list[dict]) -> list[dict]:
    """Record ``decisions`` (``kind``, ``image_id``, ``other_image_id`` for a pair, ``rule``): keep or
    discard replaces the image's earlier keep or discard; a pair already apart stays as it was."""
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        checked = _checked(s, collection, decisions)
        recorded = []
        for kind, a, b, rule in checked:
            if kind == "not_duplicate":
                existing = s.scalar(select(DuplicateDecision).where(
                    DuplicateDecision.kind == kind, DuplicateDecision.image_id == a, DuplicateDecision.other_image_id == b))
                if existing is not None:
                    recorded.append(existing)
                    continue
            else:
                s.execute(delete(DuplicateDecision).where(DuplicateDecision.image_id == a,
                                                          DuplicateDecision.kind.in_(("keep", "discard"))))
            decision = DuplicateDecision(collection_id=collection.id, kind=kind, image_id=a, other_image_id=b,
                                         rule=str(rule)[:255] if rule else None)
            s.add(decision)
            recorded.append(decision)
        s.flush()
        paths = _paths(s, {i for d in recorded for i in (d.image_id, d.other_image_id)})
        return [_json(d, paths) for d in recorded]


def list_decisions(library: Library, collection_name: str, kind: str | None = None) -> list[dict]:
    """The collection's decisions, oldest first (``kind``: only those)."""
    if kind is not None and kind not in DECISION_KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(DECISION_KINDS)}, got {kind!r}")
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        query = select(DuplicateDecision).where(DuplicateDecision.collection_id == collection.id)
        if kind is not None:
            query = query.where(DuplicateDecision.kind == kind)
        decisions = list(s.scalars(query.order_by(DuplicateDecision.id)))
        paths = _paths(s, {i for d in decisions for i in (d.image_id, d.other_image_id)})
        return [_json(d, paths) for d in decisions]


def decisions_csv(decisions: list[dict]) -> str:
    """``list_decisions`` as CSV, a header line first."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(decisions)
    return out.getvalue()


def undo_decision(library: Library, decision_id: int) -> dict:
    """Delete one decision; returns it as it was. A pair no longer apart may join a group again at
    the next re-grouping or scan."""
    with library.catalog.session() as s:
        decision = s.get(DuplicateDecision, decision_id)
        if decision is None:
            raise NotFound(f"no duplicate decision {decision_id}")
        doc = _json(decision, _paths(s, {decision.image_id, decision.other_image_id}))
        doc["collection"] = s.get(Collection, decision.collection_id).name
        s.delete(decision)
        return doc
