"""Duplicate groups of a collection, in three tiers with their evidence.

``exact``: identical bytes (SHA-256). ``near``: edited copies of one picture. ``similar``: other
shots of the same scene or object. Candidates are the edges of the collection's k-nearest-neighbour
graph (knn_graph.py) whose cosine is at least the calibration's floor; each edge gets its
evidence and verdict (verdicts.py), geometric verification (geometry.py, on every core) only where
it could change the verdict. Near groups are the connected components of near edges, similar groups those of near and
similar edges that hold more than one near group or single picture. A group's score is its weakest
link (Kruskal, strongest links first): the copy probability for near groups, the cosine for similar
ones; its evidence is that link's.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from indexer.catalog.models import Image
from indexer.duplicates.geometry import verify_pairs
from indexer.duplicates.groups import Group, save_groups
from indexer.duplicates.judging import calibration, check_threshold
from indexer.duplicates.knn_graph import knn_graph
from indexer.ingest.phash import hash_similarity
from indexer.library import Library
from indexer.verdicts import Calibration, PairEvidence, normalise
from indexer.verification import Geometry

NEIGHBOURS = 16  # graph edges per picture


class UnionFind:
    """Disjoint sets of image ids, merged edge by edge (the smaller id roots a set)."""

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


Edge = tuple[int, int, PairEvidence]


@dataclass
class ScanPlan:
    """A scan's first stage: the collection's pictures, the exact groups, and the graph's edges
    with their cheap evidence; ``wanted`` are the edges whose verdict geometry could change."""

    paths: dict[int, str]
    exact: list[Group]
    edges: list[Edge]
    calibration: Calibration

    @property
    def wanted(self) -> list[tuple[int, int]]:
        return [(a, b) for a, b, evidence in self.edges if self.calibration.wants_geometry(evidence)]


def first_stage(library: Library, collection_name: str, threshold: float | None = None) -> ScanPlan:
    """Exact groups, and the k-nearest-neighbour graph's edges with their cheap evidence (no geometry)."""
    threshold = check_threshold(threshold)
    cal = calibration(library, threshold)
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        rows = s.execute(select(Image.id, Image.path, Image.sha256, Image.phash).where(
            Image.collection_id == collection.id, Image.status == "indexed").order_by(Image.id)).all()
        stores = None
        if collection.model_id is not None:
            library.bind_model(s, collection)
            stores = library.stores_for(s, collection)
    paths = {r.id: r.path for r in rows}
    sha = {r.id: r.sha256 for r in rows}
    phash = {r.id: r.phash for r in rows}
    plan = ScanPlan(paths, exact_groups(rows), [], cal)
    if stores is None or len(rows) < 2:
        return plan
    graph = knn_graph(stores.global_.fetch, list(paths), stores.global_.spec.dim, NEIGHBOURS, cal.candidate_floor)
    for a, b, score in zip(graph.a.tolist(), graph.b.tolist(), graph.score.tolist()):
        if a not in paths or b not in paths or sha[a] == sha[b]:
            continue  # identical bytes: already an exact group
        plan.edges.append((a, b, PairEvidence(
            descriptor=float(score),
            normalised=normalise(float(score), [graph.background.get(a), graph.background.get(b)], cal.beta),
            hash=hash_similarity(phash[a], phash[b]) if phash[a] is not None and phash[b] is not None else None)))
    return plan


def exact_groups(rows) -> list[Group]:
    """Groups of the rows (id, path, sha256) whose bytes are identical."""
    by_sha: dict[str, list] = {}
    for r in rows:
        by_sha.setdefault(r.sha256, []).append(r)
    return [Group("exact", [r.id for r in members], [r.path for r in members], 1.0)
            for members in by_sha.values() if len(members) > 1]


def last_stage(plan: ScanPlan, geometry: dict[tuple[int, int], Geometry | None]) -> list[Group]:
    """Every edge judged on its evidence and the geometry found for it, and the groups of the three
    tiers, in their order (exact, then near, then similar; larger groups first)."""
    judged: list[Edge] = []
    for a, b, evidence in plan.edges:
        evidence.geometry = geometry.get((a, b))
        plan.calibration.judge(evidence)
        if evidence.verdict is not None:
            judged.append((a, b, evidence))
    order = {"exact": 0, "near": 1, "similar": 2}
    return sorted(plan.exact + _tiered_groups(judged, plan.paths),
                  key=lambda g: (order[g.kind], -len(g.image_ids), g.image_ids[0]))


def find_duplicates(library: Library, collection_name: str, threshold: float | None = None,
                    save: bool = True) -> list[Group]:
    """Exact, near and similar groups of the collection, geometry on every core of this machine;
    saved as the collection's groups (a scan job splits the same stages into chunks of pairs:
    jobs/duplicates.py)."""
    plan = first_stage(library, collection_name, threshold)
    groups = last_stage(plan, verify_pairs(library, plan.wanted, plan.paths))
    if save:
        save_groups(library, collection_name, groups, check_threshold(threshold))
    return groups


def _tiered_groups(judged: list[Edge], paths: dict[int, str]) -> list[Group]:
    """Near groups from near edges; similar groups from near and similar edges (Kruskal each)."""
    out: list[Group] = []
    near = sorted((e for e in judged if e[2].verdict == "near"), key=lambda e: -e[2].copy_probability)
    near_uf, near_weakest = UnionFind(), {}
    for a, b, ev in near:
        if near_uf.union(a, b):
            near_weakest[near_uf.find(a)] = (a, b, ev)
    near_members = _components(near_uf, {i for a, b, _ in near for i in (a, b)})
    for root, members in near_members.items():
        a, b, ev = near_weakest[root]
        out.append(Group("near", members, [paths[i] for i in members], ev.copy_probability,
                         {"pair": [a, b], **ev.to_json()}))
    related = sorted(judged, key=lambda e: -e[2].descriptor)
    uf, weakest = UnionFind(), {}
    for a, b, ev in related:
        if uf.union(a, b):
            weakest[uf.find(a)] = (a, b, ev)
    for root, members in _components(uf, {i for a, b, _ in related for i in (a, b)}).items():
        if len({near_uf.find(i) for i in members}) < 2:
            continue  # one near group and nothing else: not another shot of anything
        a, b, ev = weakest[root]
        out.append(Group("similar", members, [paths[i] for i in members], ev.descriptor,
                         {"pair": [a, b], **ev.to_json()}))
    return out


def _components(uf: UnionFind, nodes: set[int]) -> dict[int, list[int]]:
    components: dict[int, list[int]] = {}
    for i in sorted(nodes):
        components.setdefault(uf.find(i), []).append(i)
    return {root: members for root, members in components.items() if len(members) > 1}
