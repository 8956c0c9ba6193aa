"""Is this picture a duplicate of something in the collection? Each match with its tier and evidence.

The picture's nearest indexed images (at least the calibration's candidate floor) are judged as a
duplicate scan judges a pair (scan.py, judging.py), the backgrounds of both measured against the
collection's panel (indexer/background.py); identical bytes are ``exact``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select

from indexer.background import collection_panel
from indexer.catalog.models import Image
from indexer.duplicates.judging import calibration, check_threshold, judge_pair, picture_cache
from indexer.ingest import local_features
from indexer.ingest.phash import hash_similarity, perceptual_hash
from indexer.ingest.reading import LoadedImage
from indexer.library import Library
from indexer.query import SearchFilters, SearchHit, check_k, embed_pictures, open_for_query, search_vectors
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


QueryEmbedder = Callable[[Upload, LoadedImage], np.ndarray]


def check_upload(library: Library, collection_name: str, upload: Upload, k: int = 10, threshold: float | None = None,
                 filters: SearchFilters | None = None,
                 embed: QueryEmbedder | None = None) -> tuple[str, list[Match]]:
    """``check_picture`` of a picture a client sent: decoded as indexing decodes for the descriptor
    and the hash, and larger for the keypoints. ``embed`` computes the descriptor elsewhere (a gpu
    worker) from the upload and its decoded picture; by default the configured model here."""
    library.require_collection(collection_name)
    max_pixels = library.settings.max_image_pixels
    as_indexed = decode_upload(upload, max_pixels, target_long_side=library.embedder.image_size)
    larger = decode_upload(upload, max_pixels, target_long_side=VERIFY_SIDE)
    vector = embed(upload, as_indexed) if embed else embed_pictures(library, [as_indexed.image])
    return check_picture(library, collection_name, larger.image, vector, perceptual_hash(as_indexed.image),
                         as_indexed.sha256, k, threshold, filters)


def check_picture(library: Library, collection_name: str, picture: PILImage.Image, vector: np.ndarray,
                  query_hash: int, sha256: str | None = None, k: int = 10, threshold: float | None = None,
                  filters: SearchFilters | None = None) -> tuple[str, list[Match]]:
    """The collection's duplicates of ``picture`` (embedded as ``vector``, hashed as ``query_hash``,
    both from the picture decoded as indexing decodes), best tier first. Returns the verdict
    model's name and the matches that got a verdict."""
    check_k(k)
    cal = calibration(library, check_threshold(threshold))
    vector = np.asarray(vector, dtype=np.float32).reshape(1, -1)
    hits = search_vectors(library, collection_name, vector, k, filters=filters)[0]
    candidates = [h for h in hits if h.score >= cal.candidate_floor or h.score >= 0.999]
    if not candidates:
        return cal.source, []
    ids = [h.image_id for h in candidates]
    with library.catalog.session() as s:
        collection, stores = open_for_query(library, s, collection_name)
        rows = {r.id: r for r in s.execute(select(Image.id, Image.sha256, Image.phash).where(
            Image.id.in_(ids), Image.collection_id == collection.id))}
        panel = collection_panel(s, collection.id, stores.global_)
    own_background = panel.backgrounds(vector)[0]
    backgrounds = panel.background_of(*stores.global_.fetch(np.array(ids, dtype=np.int64)))
    query_points = None
    cache = picture_cache(library)
    matches: list[Match] = []
    for hit in candidates:
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
                query_points = local_features.extract(picture)  # as the picture would be stored
            return cache.get(hit.image_id, hit.path), query_points

        judge_pair(cal, evidence, pictures)
        if evidence.verdict is not None:
            matches.append(Match(hit, evidence))
    matches.sort(key=lambda m: (TIER_ORDER[m.evidence.verdict], -(m.evidence.copy_probability or 0.0), -m.hit.score))
    return cal.source, matches
