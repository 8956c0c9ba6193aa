"""Labelled picture pairs and their duplicate evidence, for bench/fit_verdicts.py and bench/quality.py.

A pair is a query picture (an edited copy, another shot, or an unrelated photo's copy) and one
indexed photo. Its evidence is what the product computes for a pair found by a duplicate scan
(indexer/verdicts.py): descriptor cosine, the cosine normalised against each side's background
among the indexed photos, pHash agreement, and geometric verification.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.ingest.phash import hash_similarity, perceptual_hash  # noqa: E402
from indexer.verdicts import BACKGROUND_RANKS, PairEvidence, background_mean, normalise  # noqa: E402
from indexer.verification import keypoints, verify_pictures  # noqa: E402


@dataclass
class Pair:
    label: str  # "copy", "other shot" or "unrelated"
    family: str
    query: Image.Image
    ref: int  # index of the indexed photo


def backgrounds(ref_vectors: np.ndarray, query_vectors: np.ndarray) -> tuple[list, list]:
    """Background of every indexed photo (against the others) and of every query (against all)."""
    ref_sims = ref_vectors @ ref_vectors.T
    np.fill_diagonal(ref_sims, -np.inf)
    ref_bg = [background_mean(-np.sort(-row)[:-1]) for row in ref_sims]
    query_bg = [background_mean(-np.sort(-row)) for row in query_vectors @ ref_vectors.T]
    return ref_bg, query_bg


def pair_evidence(embedder, refs: list[Image.Image], pairs: list[Pair], beta: float = 1.0,
                  geometry: bool = True) -> list[PairEvidence]:
    """The evidence of every pair (geometry too unless ``geometry`` is False)."""
    ref_vectors = embedder.embed(refs).vectors
    query_vectors = embedder.embed([p.query for p in pairs]).vectors
    ref_bg, query_bg = backgrounds(ref_vectors, query_vectors)
    ref_hash = {}
    ref_points = {}
    out = []
    for k, pair in enumerate(pairs):
        r = pair.ref
        if r not in ref_hash:
            ref_hash[r] = perceptual_hash(refs[r])
            ref_points[r] = keypoints(refs[r]) if geometry else None
        descriptor = float(query_vectors[k] @ ref_vectors[r])
        out.append(PairEvidence(
            descriptor=descriptor,
            normalised=normalise(descriptor, [query_bg[k], ref_bg[r]], beta),
            hash=hash_similarity(perceptual_hash(pair.query), ref_hash[r]),
            geometry=verify_pictures(ref_points[r], pair.query) if geometry else None))
    return out


def nearest_refs(embedder, ref_vectors: np.ndarray, pictures: list[Image.Image]) -> list[int]:
    """The indexed photo closest to each picture (an unrelated query's hardest candidate)."""
    return [int(i) for i in np.argmax(embedder.embed(pictures).vectors @ ref_vectors.T, axis=1)]


__all__ = ["BACKGROUND_RANKS", "Pair", "backgrounds", "pair_evidence", "nearest_refs"]
