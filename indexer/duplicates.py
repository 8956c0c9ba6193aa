"""Duplicate groups of a collection, in three tiers with their evidence.

``exact``: identical bytes (SHA-256). ``near``: edited copies of one picture. ``similar``: other
shots of the same scene or object. Candidates are the edges of the collection's k-nearest-neighbour
graph (indexer/knn_graph.py) whose cosine is at least the calibration's floor; each edge gets its
evidence and verdict (indexer/verdicts.py), geometric verification only where it could change the
verdict. Near groups are the connected components of near edges, similar groups those of near and
similar edges that hold more than one near group or single picture. A group's score is its weakest
link (Kruskal, strongest links first): the copy probability for near groups, the cosine for similar
ones; its evidence is that link's.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import delete, select

from indexer.catalog.models import DuplicateGroup, DuplicateMember, Image
from indexer.errors import InvalidRequest
from indexer.ingest.phash import hash_similarity
from indexer.knn_graph import knn_graph
from indexer.library import Library
from indexer.verdicts import Calibration, PairEvidence, calibration_for, normalise
from indexer.verification import Keypoints, keypoints, verify_pictures

# Used when the model records no threshold of its own (``dinoseek convert --near-threshold``); the
# shipped model records the one measured on bench/quality.py (docs/BENCHMARKS.md).
DEFAULT_NEAR_THRESHOLD = 0.90
NEIGHBOURS = 16  # graph edges per picture
KEYPOINT_CACHE = 512  # pictures whose keypoints a scan keeps (each ~100 kB with its grey levels)


@dataclass
class Group:
    kind: str
    image_ids: list[int]
    paths: list[str]
    score: float
    evidence: dict | None = None

    def to_json(self) -> dict:
        return {"kind": self.kind, "image_ids": self.image_ids, "paths": self.paths, "score": round(self.score, 6),
                "evidence": self.evidence}


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
    """The configured model's measured near-duplicate cosine threshold, else DEFAULT_NEAR_THRESHOLD."""
    return float(getattr(library.embedder.vit, "embed_defaults", {}).get("near_threshold", DEFAULT_NEAR_THRESHOLD))


def check_threshold(threshold: float | None) -> float | None:
    if threshold is not None and not -1.0 <= float(threshold) <= 1.0:
        raise InvalidRequest(f"threshold must be a cosine similarity in [-1, 1], got {threshold}")
    return None if threshold is None else float(threshold)


def calibration(library: Library, threshold: float | None = None) -> Calibration:
    """The verdict model: the backbone's fitted one, or with ``threshold`` the descriptor cosine
    alone decides ``near`` (an expert override; evidence is still reported)."""
    if threshold is not None:
        return Calibration.fallback(threshold)
    return calibration_for(library.embedder.vit, near_threshold(library))


class PictureCache:
    """Keypoints of indexed pictures, read from their files on first use (a bounded LRU)."""

    def __init__(self, library: Library, size: int = KEYPOINT_CACHE) -> None:
        self.library = library
        self.size = size
        self.entries: OrderedDict[int, tuple[object, Keypoints] | None] = OrderedDict()

    def get(self, image_id: int, path: str):
        """(grey picture at verification size, keypoints), or None when the file cannot be read."""
        if image_id in self.entries:
            self.entries.move_to_end(image_id)
            return self.entries[image_id]
        from PIL import Image as PILImage

        from indexer.ingest.reading import read_image
        from indexer.verification import VERIFY_SIDE, grey_levels
        from model.preprocess import ImageDecodeError

        try:
            picture = read_image(path, self.library.settings.max_image_pixels, target_long_side=VERIFY_SIDE).image
            # reduced exactly as a query picture is (verification.grey_levels), so a pair's
            # evidence does not depend on which side was the query
            grey = PILImage.fromarray(grey_levels(picture))
            entry = (grey, keypoints(grey))
        except (ImageDecodeError, OSError):
            entry = None  # a file gone or broken since indexing: judged on the other evidence
        self.entries[image_id] = entry
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return entry


def judge_pair(cal: Calibration, evidence: PairEvidence, geometry) -> PairEvidence:
    """Verify geometrically when the cheap evidence leaves the verdict open, then judge."""
    if cal.wants_geometry(evidence):
        left, right = geometry()
        if left is not None and right is not None:
            evidence.geometry = verify_pictures(left[1], right[0], right[1])
    return cal.judge(evidence)


def find_duplicates(library: Library, collection_name: str, threshold: float | None = None,
                    save: bool = True) -> list[Group]:
    """Exact, near and similar groups of the collection; saved as the collection's groups."""
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
    groups: list[Group] = []
    by_sha: dict[str, list[int]] = {}
    for r in rows:
        by_sha.setdefault(r.sha256, []).append(r.id)
    for members in by_sha.values():
        if len(members) > 1:
            groups.append(Group("exact", members, [paths[i] for i in members], 1.0))
    if stores is None or len(rows) < 2:
        _finish(library, collection_name, groups, threshold, save)
        return groups

    graph = knn_graph(stores.global_.fetch, list(paths), stores.global_.spec.dim, NEIGHBOURS, cal.candidate_floor)
    pictures = PictureCache(library)
    judged: list[tuple[int, int, PairEvidence]] = []
    for a, b, score in zip(graph.a.tolist(), graph.b.tolist(), graph.score.tolist()):
        if a not in paths or b not in paths or sha[a] == sha[b]:
            continue  # identical bytes: already an exact group
        evidence = PairEvidence(
            descriptor=float(score),
            normalised=normalise(float(score), [graph.background.get(a), graph.background.get(b)], cal.beta),
            hash=hash_similarity(phash[a], phash[b]) if phash[a] is not None and phash[b] is not None else None)
        judge_pair(cal, evidence, lambda a=a, b=b: (pictures.get(a, paths[a]), pictures.get(b, paths[b])))
        if evidence.verdict is not None:
            judged.append((a, b, evidence))
    groups.extend(_tiered_groups(judged, paths))
    _finish(library, collection_name, groups, threshold, save)
    return groups


def _tiered_groups(judged: list[tuple[int, int, PairEvidence]], paths: dict[int, str]) -> list[Group]:
    """Near groups from near edges; similar groups from near and similar edges (Kruskal each)."""
    out: list[Group] = []
    near = sorted((e for e in judged if e[2].verdict == "near"), key=lambda e: -e[2].copy_probability)
    near_uf, near_weakest = _UnionFind(), {}
    for a, b, ev in near:
        if near_uf.union(a, b):
            near_weakest[near_uf.find(a)] = (a, b, ev)
    near_members = _components(near_uf, {i for a, b, _ in near for i in (a, b)})
    for root, members in near_members.items():
        a, b, ev = near_weakest[root]
        out.append(Group("near", members, [paths[i] for i in members], ev.copy_probability,
                         {"pair": [a, b], **ev.to_json()}))
    related = sorted(judged, key=lambda e: -e[2].descriptor)
    uf, weakest = _UnionFind(), {}
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


def _components(uf: _UnionFind, nodes: set[int]) -> dict[int, list[int]]:
    components: dict[int, list[int]] = {}
    for i in sorted(nodes):
        components.setdefault(uf.find(i), []).append(i)
    return {root: members for root, members in components.items() if len(members) > 1}


def _finish(library: Library, collection_name: str, groups: list[Group], threshold: float | None, save: bool) -> None:
    order = {"exact": 0, "near": 1, "similar": 2}
    groups.sort(key=lambda g: (order[g.kind], -len(g.image_ids), g.image_ids[0]))
    if save:
        _save(library, collection_name, groups, threshold)


def _save(library: Library, collection_name: str, groups: list[Group], threshold: float | None) -> None:
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        s.execute(delete(DuplicateGroup).where(DuplicateGroup.collection_id == collection.id))
        for g in groups:
            record = DuplicateGroup(collection_id=collection.id, kind=g.kind, score=g.score,
                                    threshold=None if g.kind == "exact" else threshold, evidence=g.evidence)
            record.members = [DuplicateMember(image_id=i) for i in g.image_ids]
            s.add(record)
