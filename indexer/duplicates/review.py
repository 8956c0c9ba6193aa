"""The review's thresholds: groups re-made from the judged pairs the last scan saved, at or above a
copy probability (``near``) and a cosine (``similar``), with every "not a duplicate" pair kept apart
— previewed (how many groups and pictures remain) before they are applied, and applied again by
every later scan. A threshold only tightens the scan's verdicts: a pair the scan did not judge a
duplicate is not saved, so a lower threshold than the scan's finds nothing more (scan again with a
lower ``threshold`` for that)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from indexer.catalog.models import Collection, DuplicateEdge, DuplicateGroup, DuplicateMember, Image
from indexer.duplicates.decisions import apart_pairs
from indexer.duplicates.grouping import groups_at
from indexer.duplicates.groups import Group, JudgedEdge, replace_groups
from indexer.errors import InvalidRequest
from indexer.library import Library

THRESHOLD_RANGES = {"near": (0.0, 1.0), "similar": (-1.0, 1.0)}  # a copy probability; a cosine


def check_thresholds(thresholds: dict | None) -> dict:
    """``{"near": p, "similar": cosine}`` with each given one in its range (either may be absent), or
    InvalidRequest naming the wrong one."""
    if thresholds is None:
        return {}
    if not isinstance(thresholds, dict):
        raise InvalidRequest("thresholds must be an object with near and/or similar")
    out = {}
    for key, value in thresholds.items():
        if key not in THRESHOLD_RANGES:
            raise InvalidRequest(f"threshold {key!r} is not one of {', '.join(THRESHOLD_RANGES)}")
        if value is None:
            continue
        low, high = THRESHOLD_RANGES[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise InvalidRequest(f"threshold {key} must be a number from {low} to {high}, got {value!r}")
        out[key] = float(value)
    return out


def saved_edges(s: Session, collection_id: int) -> list[JudgedEdge]:
    """The judged pairs the collection's last scan saved."""
    return [JudgedEdge(r.a, r.b, r.verdict, r.copy_probability, r.descriptor, r.evidence or {})
            for r in s.scalars(select(DuplicateEdge).where(DuplicateEdge.collection_id == collection_id))]


def _saved_exact(s: Session, collection_id: int) -> list[Group]:
    members: dict[int, list[tuple[int, str]]] = {}
    for group_id, image_id, path in s.execute(
            select(DuplicateGroup.id, Image.id, Image.path).join(DuplicateMember, DuplicateMember.group_id == DuplicateGroup.id)
            .join(Image, Image.id == DuplicateMember.image_id)
            .where(DuplicateGroup.collection_id == collection_id, DuplicateGroup.kind == "exact").order_by(Image.id)):
        members.setdefault(group_id, []).append((image_id, path))
    return [Group("exact", [i for i, _ in m], [p for _, p in m], 1.0) for m in members.values()]


def _regroup(s: Session, collection: Collection, thresholds: dict) -> list[Group]:
    edges = saved_edges(s, collection.id)
    ids = sorted({i for e in edges for i in (e.a, e.b)})
    paths = dict(s.execute(select(Image.id, Image.path).where(Image.id.in_(ids))).tuples().all()) if ids else {}
    known = [e for e in edges if e.a in paths and e.b in paths]
    return groups_at(_saved_exact(s, collection.id), known, paths, apart_pairs(s, collection.id), thresholds)


def group_counts(groups: list[Group]) -> dict:
    """How many groups and distinct pictures, in all and per tier."""
    by_kind = {kind: {"groups": 0, "images": 0} for kind in ("exact", "near", "similar")}
    seen: dict[str, set[int]] = {kind: set() for kind in by_kind}
    for g in groups:
        by_kind[g.kind]["groups"] += 1
        seen[g.kind].update(g.image_ids)
    for kind, ids in seen.items():
        by_kind[kind]["images"] = len(ids)
    return {"groups": len(groups), "images": len(set().union(*seen.values())), "by_kind": by_kind}


def preview_thresholds(library: Library, collection_name: str, thresholds: dict | None) -> dict:
    """What applying ``thresholds`` would keep (counts, nothing saved), beside what is saved now."""
    wanted = check_thresholds(thresholds)
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        return {"thresholds": wanted, **group_counts(_regroup(s, collection, wanted))}


def saved_thresholds(library: Library, collection_name: str) -> dict:
    """The collection's thresholds as applied, and the counts of its saved groups."""
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        thresholds = collection.review_thresholds or {}
        members: dict[int, tuple[str, list[int]]] = {}
        for group_id, kind, image_id in s.execute(  # one statement, whatever the number of groups
                select(DuplicateGroup.id, DuplicateGroup.kind, DuplicateMember.image_id)
                .join(DuplicateMember, DuplicateMember.group_id == DuplicateGroup.id)
                .where(DuplicateGroup.collection_id == collection.id)):
            members.setdefault(group_id, (kind, []))[1].append(image_id)
    return {"thresholds": thresholds, **group_counts([Group(kind, ids, [], 0.0) for kind, ids in members.values()])}


def apply_thresholds(library: Library, collection_name: str, thresholds: dict | None) -> dict:
    """Record ``thresholds`` as the collection's and re-make its saved groups at them; their counts."""
    wanted = check_thresholds(thresholds)
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        collection.review_thresholds = wanted or None
        groups = _regroup(s, collection, wanted)
        scanned_at = s.scalar(select(func.max(DuplicateGroup.threshold)).where(DuplicateGroup.collection_id == collection.id))
        replace_groups(s, collection.id, groups, scanned_at)
    return {"thresholds": wanted, **group_counts(groups)}


def regroup_saved(library: Library, collection_name: str) -> dict:
    """Re-make the saved groups at the collection's thresholds and decisions (after a pair was marked
    apart, or such a mark undone); their counts."""
    with library.catalog.session() as s:
        thresholds = library.get_collection(s, collection_name).review_thresholds
    return apply_thresholds(library, collection_name, thresholds)
