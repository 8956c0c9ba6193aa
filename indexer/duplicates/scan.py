"""Duplicate groups of a collection, in three tiers with their evidence.

``exact``: identical bytes (SHA-256). ``near``: edited copies of one picture. ``similar``: other
shots of the same scene or object. Candidates are the edges of the collection's k-nearest-neighbour
graph (knn_graph.py) whose cosine is at least the calibration's floor; each edge gets its
evidence and verdict (verdicts.py), geometric verification (geometry.py, on every core) only where
it could change the verdict; the judged edges become groups (grouping.py), keeping apart the pairs
a reviewer marked "not a duplicate" (decisions.py), and are saved with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from indexer.catalog.models import Image
from indexer.duplicates.decisions import apart_pairs
from indexer.duplicates.geometry import verify_pairs
from indexer.duplicates.grouping import groups_at
from indexer.duplicates.groups import Group, JudgedEdge, save_groups
from indexer.duplicates.judging import calibration, check_threshold
from indexer.duplicates.knn_graph import knn_graph
from indexer.ingest.phash import hash_similarity
from indexer.library import Library
from indexer.verdicts import Calibration, PairEvidence, normalise
from indexer.verification import Geometry

NEIGHBOURS = 16  # graph edges per picture


Edge = tuple[int, int, PairEvidence]


@dataclass
class ScanPlan:
    """A scan's first stage: the collection's pictures, the exact groups, and the graph's edges
    with their cheap evidence; ``wanted`` are the edges whose verdict geometry could change."""

    paths: dict[int, str]
    exact: list[Group]
    edges: list[Edge]
    calibration: Calibration
    apart: set[tuple[int, int]] = field(default_factory=set)  # pairs marked "not a duplicate"
    thresholds: dict = field(default_factory=dict)  # the review's (review.py), applied to the judged pairs

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
        apart, thresholds = apart_pairs(s, collection.id), collection.review_thresholds or {}
    paths = {r.id: r.path for r in rows}
    sha = {r.id: r.sha256 for r in rows}
    phash = {r.id: r.phash for r in rows}
    plan = ScanPlan(paths, exact_groups(rows), [], cal, apart, thresholds)
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


def judge_edges(plan: ScanPlan, geometry: dict[tuple[int, int], Geometry | None]) -> list[JudgedEdge]:
    """Every edge judged on its evidence and the geometry found for it; those with a verdict."""
    judged: list[JudgedEdge] = []
    for a, b, evidence in plan.edges:
        evidence.geometry = geometry.get((a, b))
        plan.calibration.judge(evidence)
        if evidence.verdict is not None:
            judged.append(JudgedEdge(a, b, evidence.verdict, float(evidence.copy_probability or 0.0),
                                     float(evidence.descriptor), evidence.to_json()))
    return judged


def last_stage(plan: ScanPlan, geometry: dict[tuple[int, int], Geometry | None]) -> tuple[list[Group], list[JudgedEdge]]:
    """The groups of the three tiers at the review's thresholds, in their order (exact, then near,
    then similar; larger groups first), and every judged edge (saved for the review)."""
    judged = judge_edges(plan, geometry)
    return groups_at(plan.exact, judged, plan.paths, plan.apart, plan.thresholds), judged


def find_duplicates(library: Library, collection_name: str, threshold: float | None = None,
                    save: bool = True) -> list[Group]:
    """Exact, near and similar groups of the collection, geometry on every core of this machine;
    saved as the collection's groups (a scan job splits the same stages into chunks of pairs:
    jobs/duplicates.py)."""
    plan = first_stage(library, collection_name, threshold)
    groups, judged = last_stage(plan, verify_pairs(library, plan.wanted, plan.paths))
    if save:
        save_groups(library, collection_name, groups, judged, check_threshold(threshold))
    return groups
