"""Duplicate groups of a collection, in three tiers with their evidence.

``exact``: identical bytes (SHA-256). ``near``: edited copies of one picture. ``similar``: other
shots of the same scene or object. Candidates are the edges of the collection's k-nearest-neighbour
graph (knn_graph.py) whose cosine is at least the calibration's floor, and the pairs that share
many stored local patches (shared_patches.py: framed, rotated and cropped copies the descriptor
does not bring together); each edge gets its evidence and verdict (verdicts.py, backgrounds
against the collection's panel), geometric verification (geometry.py, on every core) where it
could change the verdict and for every shared-patch pair, strongest first, skipping the pairs
whose pictures near links have joined by then (near_joins.py); the similar pairs between near groups
that the groups' other pictures do not bear out are dropped (support.py); the judged edges become
groups (grouping.py), keeping apart the pairs a reviewer marked "not a duplicate" (decisions.py),
and are saved with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from indexer.background import collection_panel
from indexer.catalog.models import Image, ImageFeatures
from indexer.duplicates.decisions import apart_pairs
from indexer.duplicates.geometry import GeometryPool, verify_pairs
from indexer.duplicates.grouping import groups_at
from indexer.duplicates.groups import Group, JudgedEdge, save_groups
from indexer.duplicates.judging import calibration, check_threshold
from indexer.duplicates.knn_graph import exact_scores, knn_graph
from indexer.duplicates.near_joins import NearJoins
from indexer.duplicates.shared_patches import shared_patch_pairs
from indexer.duplicates.support import PairJudge, supported
from indexer.ingest import local_features
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
    shared: set[tuple[int, int]] = field(default_factory=set)  # candidates by shared patches: always verified
    skipped: set[tuple[int, int]] = field(default_factory=set)  # wanted pairs left unverified: already joined

    def wants(self) -> np.ndarray:
        """Whether each edge is verified: its verdict could change, or its pictures share patches
        (under a verdict model that weighs geometry at all: not an expert's cosine threshold)."""
        wants = self.calibration.wants_geometry_of([evidence for _, _, evidence in self.edges])
        if self.calibration.full is not None and self.shared:
            wants |= np.array([(a, b) in self.shared for a, b, _ in self.edges], dtype=bool)
        return wants

    @property
    def wanted(self) -> list[tuple[int, int]]:
        return [(a, b) for (a, b, _), wants in zip(self.edges, self.wants()) if wants]

    def near_joins(self) -> NearJoins:
        """The joins its geometry starts from: the near links of the edges judged without it."""
        joins = NearJoins(self.calibration, {(a, b): evidence for a, b, evidence in self.edges},
                          self.thresholds.get("near"), self.apart)
        joins.link_all([edge for edge, wants in zip(self.edges, self.wants()) if not wants])
        return joins


def first_stage(library: Library, collection_name: str, threshold: float | None = None) -> ScanPlan:
    """Exact groups, and the k-nearest-neighbour graph's edges with their cheap evidence (no geometry)."""
    threshold = check_threshold(threshold)
    cal = calibration(library, threshold)
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        rows = s.execute(select(Image.id, Image.path, Image.sha256, Image.phash).where(
            Image.collection_id == collection.id, Image.status == "indexed").order_by(Image.id)).all()
        stores = panel = None
        if collection.model_id is not None:
            library.bind_model(s, collection)
            stores = library.stores_for(s, collection)
            panel = collection_panel(s, collection.id, stores.global_)
        apart, thresholds = apart_pairs(s, collection.id), collection.review_thresholds or {}
    paths = {r.id: r.path for r in rows}
    sha = {r.id: r.sha256 for r in rows}
    phash = {r.id: r.phash for r in rows}
    plan = ScanPlan(paths, exact_groups(rows), [], cal, apart, thresholds)
    if stores is None or len(rows) < 2:
        return plan
    fetch = stores.global_.fetch
    graph = knn_graph(fetch, list(paths), stores.global_.spec.dim, NEIGHBOURS, cal.candidate_floor)
    scores = dict(zip(zip(graph.a.tolist(), graph.b.tolist()), graph.score.tolist()))
    shared = [(a, b) for a, b, _ in shared_patch_pairs(stored_descriptors(library, collection.id)) if (a, b) not in scores]
    if shared:
        pairs = np.array(shared, dtype=np.int64).reshape(-1, 2)
        scores.update(zip(shared, exact_scores(fetch, pairs[:, 0], pairs[:, 1]).tolist()))
    plan.shared = set(shared)
    backgrounds = panel.backgrounds_in(stores.global_, list(paths))
    for (a, b), score in sorted(scores.items()):
        if a not in paths or b not in paths or sha[a] == sha[b] or not np.isfinite(score):
            continue  # identical bytes: already an exact group; or a picture gone since
        plan.edges.append((a, b, cheap_evidence(float(score), a, b, backgrounds, phash, cal.beta)))
    return plan


def cheap_evidence(score: float, a: int, b: int, backgrounds: dict[int, float | None],
                   phash: dict[int, int | None], beta: float) -> PairEvidence:
    """A pair's evidence before geometry: its cosine, normalised by both backgrounds, and the pHashes' agreement."""
    hashes = phash.get(a), phash.get(b)
    return PairEvidence(descriptor=score, normalised=normalise(score, [backgrounds.get(a), backgrounds.get(b)], beta),
                        hash=hash_similarity(*hashes) if None not in hashes else None)


def pair_judge(library: Library, collection_name: str, cal: Calibration, pool: GeometryPool | None = None) -> PairJudge:
    """Judges pairs the scan's stages did not reach, as they judge theirs (geometry always, on
    ``pool`` when given: the scan's own): the support check's cross pairs (support.py)."""
    def judge(pairs: list[tuple[int, int]]) -> dict[tuple[int, int], PairEvidence]:
        ids = sorted({i for pair in pairs for i in pair})
        with library.catalog.session() as s:
            collection = library.get_collection(s, collection_name)
            library.bind_model(s, collection)
            stores = library.stores_for(s, collection)
            panel = collection_panel(s, collection.id, stores.global_)
            rows = {r.id: r for r in s.execute(select(Image.id, Image.path, Image.phash).where(
                Image.id.in_(ids), Image.collection_id == collection.id, Image.status == "indexed"))}
        found, vectors = stores.global_.fetch(np.array(ids, dtype=np.int64))
        by_id = dict(zip(found.tolist(), np.asarray(vectors, dtype=np.float32)))
        backgrounds = panel.background_of(found, vectors)
        phash = {i: r.phash for i, r in rows.items()}
        present = [(a, b) for a, b in pairs if {a, b} <= by_id.keys() & rows.keys()]
        geometry = verify_pairs(library, present, {i: r.path for i, r in rows.items()}, pool=pool)
        out = {}
        for a, b in present:
            evidence = cheap_evidence(float(by_id[a] @ by_id[b]), a, b, backgrounds, phash, cal.beta)
            evidence.geometry = geometry.get((a, b))
            out[(a, b)] = cal.judge(evidence)
        return out

    return judge


def stored_descriptors(library: Library, collection_id: int) -> Iterator[tuple[int, np.ndarray]]:
    """Each indexed picture's stored ORB descriptors (a picture without stored features, or with
    damaged ones, has none), streamed from the catalog."""
    with library.catalog.session() as s:
        rows = s.execute(select(ImageFeatures.image_id, ImageFeatures.data).join(Image, Image.id == ImageFeatures.image_id)
                         .where(Image.collection_id == collection_id, Image.status == "indexed")
                         .order_by(ImageFeatures.image_id).execution_options(yield_per=512))
        for image_id, data in rows:
            try:
                yield image_id, local_features.decode(data).descriptors
            except local_features.FeaturesError:
                continue


def exact_groups(rows) -> list[Group]:
    """Groups of the rows (id, path, sha256) whose bytes are identical."""
    by_sha: dict[str, list] = {}
    for r in rows:
        by_sha.setdefault(r.sha256, []).append(r)
    return [Group("exact", [r.id for r in members], [r.path for r in members], 1.0)
            for members in by_sha.values() if len(members) > 1]


def judge_edges(plan: ScanPlan, geometry: dict[tuple[int, int], Geometry | None]) -> list[JudgedEdge]:
    """Every edge judged on its evidence and the geometry found for it (but those skipped as
    joined: they have no evidence of their own); those with a verdict."""
    edges = [(a, b, evidence) for a, b, evidence in plan.edges if (a, b) not in plan.skipped]
    for a, b, evidence in edges:
        evidence.geometry = geometry.get((a, b))
    plan.calibration.judge_all([evidence for _, _, evidence in edges])
    return [JudgedEdge(a, b, evidence.verdict, float(evidence.copy_probability or 0.0), float(evidence.descriptor),
                       evidence.to_json()) for a, b, evidence in edges if evidence.verdict is not None]


def last_stage(plan: ScanPlan, geometry: dict[tuple[int, int], Geometry | None],
               judge: PairJudge) -> tuple[list[Group], list[JudgedEdge]]:
    """The groups of the three tiers at the review's thresholds, in their order (exact, then near,
    then similar; larger groups first), and every judged edge that its groups bear out (saved for
    the review; ``judge`` judges the cross pairs that check needs, support.py)."""
    known = {(a, b): evidence.verdict for a, b, evidence in plan.edges if (a, b) not in plan.skipped}
    judged = supported(judge_edges(plan, geometry), known, judge)
    return groups_at(plan.exact, judged, plan.paths, plan.apart, plan.thresholds), judged


def find_duplicates(library: Library, collection_name: str, threshold: float | None = None,
                    save: bool = True) -> list[Group]:
    """Exact, near and similar groups of the collection, geometry on every core of this machine;
    saved as the collection's groups (a scan job splits the same stages into chunks of pairs:
    jobs/duplicates.py)."""
    plan = first_stage(library, collection_name, threshold)
    joins = plan.near_joins()
    with GeometryPool(library) as pool:
        geometry = verify_pairs(library, plan.wanted, plan.paths, joins=joins, pool=pool)
        plan.skipped = joins.skipped
        groups, judged = last_stage(plan, geometry, pair_judge(library, collection_name, plan.calibration, pool))
    if save:
        save_groups(library, collection_name, groups, judged, check_threshold(threshold))
    return groups
