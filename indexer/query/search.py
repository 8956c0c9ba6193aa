"""Query by example: an image file, an uploaded picture or an indexed image id → the closest images."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from indexer.background import collection_panel
from indexer.catalog.models import Collection, Image
from indexer.errors import InvalidRequest, NotFound
from indexer.images import image_metadata
from indexer.ingest.phash import perceptual_hash
from indexer.library import Library
from indexer.framing import Window, content_windows, crop_windows
from indexer.query.opening import open_for_query, read_query_file
from indexer.query.verified import (
    QUERY_SIDE,
    VERIFY_TOP,
    Candidate,
    CopyEvidence,
    VerifiedQuery,
    check_verify_top,
    query_keypoints,
    stored_keypoints,
    verify_candidates,
)
from indexer.stores import CollectionStores
from indexer.uploads import Upload, decode_upload
from indexer.verdicts import calibration_for, model_near_threshold, normalise
from indexer.verification import VERIFY_SIDE

MAX_K = 1000
# a search stops verifying once it holds k verified copies and at least this many: with few, a
# later candidate may still be a likelier copy than the first ones found
STOP_AFTER_COPIES = 10
WINDOW_CANDIDATES = 5  # nearest images of each content window of the query that are verified too
EXACT_FILTER_LIMIT = 20_000  # a filter that leaves at most this many images is searched exactly among them


@dataclass
class SearchFilters:
    """Metadata conditions a result must meet: path prefix, capture-date range, file formats."""

    path_prefix: str | None = None
    taken_after: datetime | None = None
    taken_before: datetime | None = None
    formats: tuple[str, ...] = ()

    def active(self) -> bool:
        return bool(self.path_prefix or self.taken_after or self.taken_before or self.formats)

    def clauses(self) -> list:
        out = []
        if self.path_prefix:  # exact and case-sensitive on every database (SQLite's LIKE ignores case)
            out.append(func.substr(Image.path, 1, len(self.path_prefix)) == self.path_prefix)
        if self.taken_after:
            out.append(Image.taken_at >= self.taken_after)
        if self.taken_before:
            out.append(Image.taken_at <= self.taken_before)
        if self.formats:
            out.append(Image.format.in_([f.upper() for f in self.formats]))
        return out


@dataclass
class SearchHit:
    image_id: int
    path: str
    score: float
    box: list[int] | None = None
    metadata: dict = field(default_factory=dict)
    evidence: CopyEvidence | None = None  # set when the hit was verified against the query

    def to_json(self, with_metadata: bool = False) -> dict:
        doc = {"image_id": self.image_id, "path": self.path, "score": round(self.score, 6), "box": self.box}
        if self.evidence is not None:
            doc["verdict"] = self.evidence.verdict
            doc["evidence"] = self.evidence.to_json()
        if with_metadata:
            doc["metadata"] = self.metadata
        return doc


@dataclass
class QueryResult:
    query: str
    results: list[SearchHit]
    box: list[int] | None = None

    def to_json(self) -> dict:
        return {"query": self.query, "box": self.box, "results": [hit.to_json() for hit in self.results]}


def check_k(k: int) -> int:
    """``k`` when it is a result count this service answers, else InvalidRequest."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InvalidRequest(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return k


def _hits(session: Session, collection: Collection, ids: np.ndarray, scores: np.ndarray, k: int,
          threshold: float | None, exclude: set[int], exclude_path: str | None,
          filters: SearchFilters | None = None) -> list[SearchHit]:
    wanted = [(int(i), float(s)) for i, s in zip(ids, scores) if i >= 0 and int(i) not in exclude
              and (threshold is None or s >= threshold)]
    if not wanted:
        return []
    rows = {r.id: r for r in session.scalars(select(Image).where(
        Image.id.in_([i for i, _ in wanted]), Image.collection_id == collection.id, Image.status == "indexed",
        *(filters.clauses() if filters else [])))}
    hits = [SearchHit(i, rows[i].path, s, None, image_metadata(rows[i])) for i, s in wanted
            if i in rows and rows[i].path != exclude_path]
    return hits[:k]


def search_vectors(library: Library, collection_name: str, vectors: np.ndarray, k: int = 10,
                   threshold: float | None = None, exclude_ids: list[set[int]] | None = None,
                   exclude_paths: list[str | None] | None = None,
                   filters: SearchFilters | None = None) -> list[list[SearchHit]]:
    """Top-k per query vector, joined with the catalog; excluded ids/paths never appear. With
    ``filters``, a selective filter is searched exactly among the images it leaves; a broad one
    over-fetches from the index and filters the hits."""
    check_k(k)
    n = len(vectors)
    exclude_ids = exclude_ids or [set() for _ in range(n)]
    exclude_paths = exclude_paths or [None] * n
    queries = np.asarray(vectors, dtype=np.float32)
    with library.catalog.session() as s:
        collection, stores = open_for_query(library, s, collection_name)
        return _search_in(s, collection, stores, queries, k, threshold, exclude_ids, exclude_paths, filters)


def _search_in(s: Session, collection: Collection, stores: CollectionStores | None, queries: np.ndarray, k: int,
               threshold: float | None, exclude_ids: list[set[int]], exclude_paths: list[str | None],
               filters: SearchFilters | None) -> list[list[SearchHit]]:
    """The search itself, inside the caller's session."""
    n = len(queries)
    if stores is None or not n:
        return [[] for _ in range(n)]
    extra = max(len(e) for e in exclude_ids) + 1
    if filters is not None and filters.active():
        allowed = list(s.scalars(select(Image.id).where(
            Image.collection_id == collection.id, Image.status == "indexed", *filters.clauses())
            .limit(EXACT_FILTER_LIMIT + 1)))
        if len(allowed) <= EXACT_FILTER_LIMIT:
            ids, scores = _exact_among(stores, np.array(allowed, dtype=np.int64), queries, k + extra)
        else:
            result = stores.global_.search(queries, min(MAX_K * 10, (k + extra) * 10))
            ids, scores = result.ids, result.scores
    else:
        result = stores.global_.search(queries, k + extra)
        ids, scores = result.ids, result.scores
    return [_hits(s, collection, ids[q], scores[q], k, threshold, exclude_ids[q], exclude_paths[q], filters)
            for q in range(n)]


def _exact_among(stores: CollectionStores, allowed: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each query among ``allowed`` image ids, by exact inner product."""
    found, vectors = stores.global_.fetch(allowed) if len(allowed) else (allowed, np.zeros((0, queries.shape[1])))
    scores = queries @ np.asarray(vectors, dtype=np.float32).T
    take = min(k, len(found))
    order = np.argsort(-scores, axis=1)[:, :take]
    return found[order], np.take_along_axis(scores, order, axis=1)


def embed_pictures(library: Library, pictures: list[PILImage.Image]) -> np.ndarray:
    """The configured model's global descriptors of query pictures, (n, D) float32."""
    return library.embedder.embed(pictures).vectors


@dataclass
class QueryPicture:
    """A query picture twice: decoded as indexing decodes (its descriptor and hash) and larger
    (its keypoints and content windows); ``larger`` may be the same picture."""

    as_indexed: PILImage.Image
    larger: PILImage.Image
    width: int  # the picture's size as the client sees it: the boxes are given in these pixels
    height: int


ViewEmbedder = Callable[[list[Window]], np.ndarray]


def search_picture(library: Library, collection_name: str, query: QueryPicture, k: int = 10,
                   threshold: float | None = None, filters: SearchFilters | None = None, verify: bool = True,
                   verify_top: int = VERIFY_TOP, exclude_path: str | None = None,
                   embed: ViewEmbedder | None = None) -> list[SearchHit]:
    """The k closest images to a query picture. Verified (the default): the descriptor's top
    ``verify_top`` and the nearest images of the query's content windows are verified against it
    (until ``k``, and at least STOP_AFTER_COPIES, of them are verified copies), verified copies first (by copy probability), the
    rest in descriptor order. ``embed`` computes
    the descriptors of the whole query and of its windows elsewhere (a gpu worker)."""
    check_k(k)
    check_verify_top(verify_top)
    windows = content_windows(query.larger) if verify else []
    if embed is not None:
        vectors = embed(windows)
    else:
        vectors = embed_pictures(library, [query.as_indexed, *crop_windows(query.as_indexed, windows)])
    with library.catalog.session() as s:
        collection, stores = open_for_query(library, s, collection_name)
        if not verify:
            return _search_in(s, collection, stores, vectors[:1], k, threshold, [set()], [exclude_path], filters)[0]
        verified = VerifiedQuery(query_keypoints(query.larger, windows), query.width, query.height,
                                 perceptual_hash(query.as_indexed))
        return _verified(library, s, collection, stores, verified, vectors, k, threshold, filters, set(), exclude_path,
                         verify_top)


def _verified(library: Library, s: Session, collection: Collection, stores: CollectionStores | None,
              query: VerifiedQuery, vectors: np.ndarray, k: int, threshold: float | None,
              filters: SearchFilters | None, exclude_ids: set[int], exclude_path: str | None,
              verify_top: int) -> list[SearchHit]:
    """Verified search inside the caller's session: ``vectors`` holds the query's descriptor first,
    then those of its content windows."""
    n = len(vectors)
    found = _search_in(s, collection, stores, vectors[:1], max(k, verify_top), None, [exclude_ids], [exclude_path],
                       filters)[0]
    candidates = {h.image_id: h for h in found[:verify_top]}
    if n > 1:
        for hits in _search_in(s, collection, stores, vectors[1:], WINDOW_CANDIDATES, None, [exclude_ids] * (n - 1),
                               [exclude_path] * (n - 1), filters):
            for h in hits:
                candidates.setdefault(h.image_id, h)
    if not candidates:
        return []
    ids = list(candidates)
    found_ids, stored = stores.global_.fetch(np.array(ids, dtype=np.int64))
    descriptors = (dict(zip(found_ids.tolist(), (np.asarray(stored, dtype=np.float32) @ vectors[0]).tolist()))
                   if len(found_ids) else {})
    hashes = dict(s.execute(select(Image.id, Image.phash).where(Image.id.in_(ids))).all())
    cal = calibration_for(library.embedder.vit, model_near_threshold(library.embedder.vit))
    panel = collection_panel(s, collection.id, stores.global_)
    own_background = panel.backgrounds(vectors[:1], [next(iter(exclude_ids))] if len(exclude_ids) == 1 else None)[0]
    backgrounds = panel.background_of(found_ids, stored)

    def candidate(i: int) -> Candidate:
        descriptor = descriptors.get(i, candidates[i].score)
        return Candidate(i, descriptor, normalise(descriptor, [own_background, backgrounds.get(i)], cal.beta),
                         hashes.get(i), candidates[i].metadata.get("width") or 1, candidates[i].metadata.get("height") or 1)

    evidence = verify_candidates(cal, query, [candidate(i) for i in ids], stored_keypoints(s, ids),
                                 enough=max(k, STOP_AFTER_COPIES))
    for image_id, hit in candidates.items():
        hit.evidence = evidence.get(image_id)
        hit.score = descriptors.get(image_id, hit.score)
    copies = sorted((h for h in candidates.values() if h.evidence is not None and h.evidence.verdict == "copy"),
                    key=lambda h: -h.evidence.copy_probability)
    copy_ids = {c.image_id for c in copies}
    rest = [h for h in found if h.image_id not in copy_ids and (threshold is None or h.score >= threshold)]
    return (copies + rest)[:k]


def read_query(library: Library, path: str | os.PathLike) -> QueryPicture:
    """A query file read as indexing reads it, and once more at the size verification works at."""
    as_indexed = read_query_file(library, path, target_long_side=library.embedder.image_size)
    larger = read_query_file(library, path, target_long_side=max(VERIFY_SIDE, QUERY_SIDE))
    return QueryPicture(as_indexed.image, larger.image, as_indexed.info.width, as_indexed.info.height)


def upload_query(library: Library, upload: Upload) -> QueryPicture:
    """An uploaded query picture decoded as indexing decodes, and once more larger for verification."""
    max_pixels = library.settings.max_image_pixels
    as_indexed = decode_upload(upload, max_pixels, target_long_side=library.embedder.image_size)
    larger = decode_upload(upload, max_pixels, target_long_side=max(VERIFY_SIDE, QUERY_SIDE))
    return QueryPicture(as_indexed.image, larger.image, as_indexed.info.width, as_indexed.info.height)


def search_files(library: Library, collection_name: str, files: list[str | os.PathLike], k: int = 10,
                 threshold: float | None = None, verify: bool = True, verify_top: int = VERIFY_TOP) -> list[QueryResult]:
    """Query by image files (in argument order); a file that is itself indexed is left out of its results."""
    check_k(k)
    check_verify_top(verify_top)
    queries = [read_query(library, f) for f in files]
    library.require_collection(collection_name)
    return [QueryResult(str(f), search_picture(library, collection_name, q, k, threshold, verify=verify,
                                               verify_top=verify_top, exclude_path=os.path.abspath(str(f))))
            for f, q in zip(files, queries)]


def search_by_id(library: Library, collection_name: str, image_id: int, k: int = 10,
                 threshold: float | None = None, filters: SearchFilters | None = None, verify: bool = True,
                 verify_top: int = VERIFY_TOP) -> list[SearchHit]:
    """Query by an indexed image: its stored vector, itself excluded; verified on its stored
    local features (without them, the plain descriptor order)."""
    check_k(k)
    check_verify_top(verify_top)
    with library.catalog.session() as s:
        collection, stores = open_for_query(library, s, collection_name)
        row = s.get(Image, image_id)
        if row is None or row.collection_id != collection.id:
            raise NotFound(f"no image {image_id} in collection {collection_name!r}")
        if row.status != "indexed" or stores is None:
            raise InvalidRequest(f"image {image_id} ({row.path}) is {row.status}, not indexed")
        found, vectors = stores.global_.fetch(np.array([image_id]))
        if not len(found):
            raise NotFound(f"image {image_id} has no stored vector; re-index {row.path}")
        vectors = np.asarray(vectors, dtype=np.float32)
        points = stored_keypoints(s, [image_id]).get(image_id) if verify else None
        if points is None:
            return _search_in(s, collection, stores, vectors, k, threshold, [{image_id}], [None], filters)[0]
        query = VerifiedQuery(points, row.width or points.width, row.height or points.height, row.phash)
        return _verified(library, s, collection, stores, query, vectors, k, threshold, filters, {image_id}, None,
                         verify_top)
