"""Is this picture a duplicate of something in the collection? Each match with its tier and evidence.

The picture's nearest indexed images (at least the calibration's candidate floor) are judged as a
duplicate scan judges a pair (scan.py, judging.py), the backgrounds of both measured against the
collection's panel (indexer/background.py); identical bytes are ``exact``. The nearest images of
each of its content windows (a photo in borders or in a screenshot, whose descriptor the frame
dominates) are candidates too, and always verified, as a search verifies them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select

from indexer.background import collection_panel
from indexer.catalog.models import Image
from indexer.duplicates.judging import calibration, check_threshold, judge_pair, picture_cache
from indexer.framing import Window, content_windows, crop_windows
from indexer.ingest import local_features
from indexer.ingest.phash import hash_similarity, perceptual_hash
from indexer.library import Library
from indexer.query import (
    WINDOW_CANDIDATES,
    SearchFilters,
    SearchHit,
    ViewEmbedder,
    check_k,
    embed_pictures,
    open_for_query,
    search_vectors,
)
from indexer.uploads import Upload, decode_upload
from indexer.verdicts import PairEvidence, normalise
from indexer.verification import VERIFY_SIDE

TIER_ORDER = {"exact": 0, "near": 1, "similar": 2}


@dataclass
class Match:
    """An indexed image that duplicates the query, with the pair's evidence and verdict."""

    hit: SearchHit
    evidence: PairEvidence

    def to_json(self) -> dict:
        doc = self.hit.to_json(with_metadata=True)
        doc["verdict"] = self.evidence.verdict
        doc["evidence"] = self.evidence.to_json()
        return doc


def check_upload(library: Library, collection_name: str, upload: Upload, k: int = 10, threshold: float | None = None,
                 filters: SearchFilters | None = None, embed: ViewEmbedder | None = None) -> tuple[str, list[Match]]:
    """``check_picture`` of a picture a client sent: decoded as indexing decodes for the descriptors
    and the hash, and larger for its keypoints and content windows. ``embed`` computes the
    descriptors of the picture and of its windows elsewhere (a gpu worker); by default the
    configured model here."""
    library.require_collection(collection_name)
    max_pixels = library.settings.max_image_pixels
    as_indexed = decode_upload(upload, max_pixels, target_long_side=library.embedder.image_size)
    larger = decode_upload(upload, max_pixels, target_long_side=VERIFY_SIDE)
    windows = content_windows(larger.image)
    vectors = (embed(windows) if embed is not None
               else embed_pictures(library, [as_indexed.image, *crop_windows(as_indexed.image, windows)]))
    return check_picture(library, collection_name, larger.image, vectors, perceptual_hash(as_indexed.image),
                         as_indexed.sha256, k, threshold, filters, windows)


def check_picture(library: Library, collection_name: str, picture: PILImage.Image, vectors: np.ndarray,
                  query_hash: int, sha256: str | None = None, k: int = 10, threshold: float | None = None,
                  filters: SearchFilters | None = None, windows: list[Window] | None = None) -> tuple[str, list[Match]]:
    """The collection's duplicates of ``picture`` (embedded as ``vectors``: the picture's descriptor,
    then those of its content ``windows``, if given; hashed as ``query_hash``; both from the
    picture decoded as indexing decodes), best tier first. Returns the verdict model's name and
    the ``k`` best matches that got a verdict."""
    check_k(k)
    cal = calibration(library, check_threshold(threshold))
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    hits = search_vectors(library, collection_name, vectors[:1], k, filters=filters)[0]
    candidates = {h.image_id: h for h in hits if h.score >= cal.candidate_floor or h.score >= 0.999}
    framed: set[int] = set()  # found through a content window: verified whatever the descriptor says
    if len(vectors) > 1:
        for window_hits in search_vectors(library, collection_name, vectors[1:], WINDOW_CANDIDATES, filters=filters):
            for h in window_hits:
                if h.image_id not in candidates:
                    candidates[h.image_id] = h
                    framed.add(h.image_id)
    if not candidates:
        return cal.source, []
    ids = list(candidates)
    with library.catalog.session() as s:
        collection, stores = open_for_query(library, s, collection_name)
        rows = {r.id: r for r in s.execute(select(Image.id, Image.sha256, Image.phash).where(
            Image.id.in_(ids), Image.collection_id == collection.id))}
        panel = collection_panel(s, collection.id, stores.global_)
    own_background = panel.backgrounds(vectors[:1])[0]
    found_ids, stored = stores.global_.fetch(np.array(ids, dtype=np.int64))
    backgrounds = panel.background_of(found_ids, stored)
    for image_id, cosine in zip(found_ids.tolist(), (np.asarray(stored, dtype=np.float32) @ vectors[0]).tolist()):
        candidates[image_id].score = cosine  # to the whole picture, for a window's hits too
    query_points = None
    cache = picture_cache(library)
    matches: list[Match] = []
    for hit in candidates.values():
        row = rows.get(hit.image_id)
        if row is None:
            continue
        if sha256 is not None and row.sha256 == sha256:
            evidence = PairEvidence(hit.score, hash=1.0, copy_probability=1.0, verdict="exact")
            matches.append(Match(hit, evidence))
            continue
        evidence = PairEvidence(
            descriptor=hit.score,
            normalised=normalise(hit.score, [own_background, backgrounds.get(hit.image_id)], cal.beta),
            hash=hash_similarity(query_hash, row.phash) if row.phash is not None else None)

        def pictures(hit=hit):
            nonlocal query_points
            if query_points is None:
                query_points = local_features.extract(picture, windows)  # as the picture would be stored
            return cache.get(hit.image_id, hit.path), query_points

        judge_pair(cal, evidence, pictures, always=hit.image_id in framed)
        if evidence.verdict is not None:
            matches.append(Match(hit, evidence))
    matches.sort(key=lambda m: (TIER_ORDER[m.evidence.verdict], -(m.evidence.copy_probability or 0.0), -m.hit.score))
    return cal.source, matches[:k]
