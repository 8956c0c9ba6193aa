"""Duplicate groups of a collection: identical bytes (``exact``) and edited copies (``near``).

Near-duplicates are pairs whose global descriptors score at or above a threshold, found by range
search over the collection's own vectors and joined into connected components. A group's score is
its weakest link: the lowest similarity on the strongest chain that connects its members.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, select

from indexer.catalog.models import DuplicateGroup, DuplicateMember, Image
from indexer.errors import InvalidRequest
from indexer.library import Library

# Used when the model records no threshold of its own (``dinoseek convert --near-threshold``); the
# shipped model records the one measured on bench/quality.py (docs/BENCHMARKS.md).
DEFAULT_NEAR_THRESHOLD = 0.90
SCAN_CHUNK = 4096


@dataclass
class Group:
    kind: str
    image_ids: list[int]
    paths: list[str]
    score: float

    def to_json(self) -> dict:
        return {"kind": self.kind, "image_ids": self.image_ids, "paths": self.paths, "score": round(self.score, 6)}


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(x, x) != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True


def near_threshold(library: Library) -> float:
    """The configured model's measured near-duplicate threshold, else DEFAULT_NEAR_THRESHOLD."""
    return float(getattr(library.embedder.vit, "embed_defaults", {}).get("near_threshold", DEFAULT_NEAR_THRESHOLD))


def near_pairs(library: Library, collection_name: str, image_ids: list[int], threshold: float) -> list[tuple[float, int, int]]:
    """Every (score, a, b) with a < b and similarity >= threshold, streamed in chunks of queries."""
    with library.catalog.session() as s:
        stores = library.stores_for(s, library.get_collection(s, collection_name))
    pairs: list[tuple[float, int, int]] = []
    if stores is None:
        return pairs
    for start in range(0, len(image_ids), SCAN_CHUNK):
        found, vectors = stores.global_.fetch(np.array(image_ids[start:start + SCAN_CHUNK]))
        for a, (ids, scores) in zip(found.tolist(), stores.global_.range_search(vectors, threshold)):
            pairs.extend((float(sc), a, int(b)) for b, sc in zip(ids.tolist(), scores.tolist()) if b > a)
    return pairs


def find_duplicates(library: Library, collection_name: str, threshold: float | None = None,
                    save: bool = True) -> list[Group]:
    """Exact groups by SHA-256, near groups by descriptor similarity; saved as the collection's groups."""
    threshold = near_threshold(library) if threshold is None else float(threshold)
    if not -1.0 <= threshold <= 1.0:
        raise InvalidRequest(f"threshold must be a cosine similarity in [-1, 1], got {threshold}")
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        rows = s.execute(select(Image.id, Image.path, Image.sha256).where(
            Image.collection_id == collection.id, Image.status == "indexed").order_by(Image.id)).all()
        if collection.model_id is not None:
            library.bind_model(s, collection)
    paths = {i: p for i, p, _ in rows}
    sha = {i: h for i, _, h in rows}
    groups: list[Group] = []
    by_sha: dict[str, list[int]] = {}
    for i, _, h in rows:
        by_sha.setdefault(h, []).append(i)
    for members in by_sha.values():
        if len(members) > 1:
            groups.append(Group("exact", members, [paths[i] for i in members], 1.0))

    uf, weakest = _UnionFind(), {}
    for score, a, b in sorted(near_pairs(library, collection_name, [i for i, _, _ in rows], threshold), reverse=True):
        # Kruskal, strongest links first: each merge is the weakest link so far of the merged group
        if a in paths and b in paths and uf.union(a, b):
            weakest[uf.find(a)] = score
    components: dict[int, list[int]] = {}
    for i in paths:
        components.setdefault(uf.find(i), []).append(i)
    for root, members in components.items():
        if len(members) > 1 and len({sha[i] for i in members}) > 1:  # identical bytes only: already exact
            members.sort()
            groups.append(Group("near", members, [paths[i] for i in members], weakest.get(root, threshold)))
    groups.sort(key=lambda g: (g.kind != "exact", -len(g.image_ids), g.image_ids[0]))
    if save:
        _save(library, collection_name, groups, threshold)
    return groups


def _save(library: Library, collection_name: str, groups: list[Group], threshold: float) -> None:
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        s.execute(delete(DuplicateGroup).where(DuplicateGroup.collection_id == collection.id))
        for g in groups:
            record = DuplicateGroup(collection_id=collection.id, kind=g.kind, score=g.score,
                                    threshold=None if g.kind == "exact" else threshold)
            record.members = [DuplicateMember(image_id=i) for i in g.image_ids]
            s.add(record)

