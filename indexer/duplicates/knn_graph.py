"""The k-nearest-neighbour graph of a collection's global vectors, for duplicate scans at scale.

Vectors stream from the store in chunks into a FAISS index built for the scan: exact inner
product up to EXACT_LIMIT vectors, above it an inverted file with 8-bit scalar quantisation
(a byte per dimension, so a million 384-d vectors take 384 MB, and each query scans NPROBE of
about 4 sqrt(N) lists). With faiss-gpu and a visible GPU the index is searched on the GPU. Each
chunk of queries keeps only the edges at or above the floor, so memory stays bounded by the index
and the edges that matter. Scores of an approximate index are recomputed exactly from the stored vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from indexer.stores.faiss_store import gpu_count, load_faiss

EXACT_LIMIT = 100_000
NPROBE = 16
TRAIN_PER_LIST = 40  # training vectors per inverted list (FAISS asks for at least 39)
CHUNK = 4096

Fetch = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # ids → (found ids, vectors)


@dataclass
class KnnGraph:
    """Edges (a < b, cosine ≥ floor)."""

    a: np.ndarray
    b: np.ndarray
    score: np.ndarray
    approximate: bool


def _on_gpu(faiss, index):
    if gpu_count(faiss) == 0:
        return index
    return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)


def build_index(fetch: Fetch, ids: np.ndarray, dim: int, exact_limit: int = EXACT_LIMIT):
    """A FAISS index (positions = order of ``ids`` that were found) and the found ids."""
    faiss = load_faiss()
    n = len(ids)
    if n <= exact_limit:
        index = faiss.IndexFlatIP(dim)
    else:
        lists = int(4 * np.sqrt(n))
        index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, lists, faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
        sample = np.sort(np.random.default_rng(0).choice(n, min(n, lists * TRAIN_PER_LIST), replace=False))
        train = np.concatenate([fetch(ids[sample[s:s + CHUNK]])[1] for s in range(0, len(sample), CHUNK)])
        index.train(np.ascontiguousarray(train, dtype=np.float32))
        index.nprobe = NPROBE
    present = []
    for start in range(0, n, CHUNK):
        found, vectors = fetch(ids[start:start + CHUNK])
        if len(found):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
            present.append(found)
    return _on_gpu(faiss, index), (np.concatenate(present) if present else np.empty(0, dtype=np.int64))


def knn_graph(fetch: Fetch, ids: list[int], dim: int, k: int, floor: float,
              exact_limit: int = EXACT_LIMIT) -> KnnGraph:
    """Each vector's ``k`` nearest others; edges at or above ``floor`` kept once (a < b)."""
    ids_array = np.asarray(ids, dtype=np.int64)
    index, order = build_index(fetch, ids_array, dim, exact_limit)
    approximate = len(ids_array) > exact_limit
    edges_a, edges_b, edges_s = [], [], []
    for start in range(0, len(order), CHUNK):
        found, vectors = fetch(order[start:start + CHUNK])
        if not len(found):
            continue
        scores, positions = index.search(np.ascontiguousarray(vectors, dtype=np.float32), k + 1)
        neighbours = np.where(positions >= 0, order[np.clip(positions, 0, None)], -1)
        for row, me in enumerate(found.tolist()):
            others = (neighbours[row] != me) & (neighbours[row] >= 0)
            mine, theirs = scores[row][others], neighbours[row][others]
            keep = mine >= floor
            edges_a.append(np.minimum(me, theirs[keep]))
            edges_b.append(np.maximum(me, theirs[keep]))
            edges_s.append(mine[keep])
    a = np.concatenate(edges_a) if edges_a else np.empty(0, dtype=np.int64)
    b = np.concatenate(edges_b) if edges_b else np.empty(0, dtype=np.int64)
    s = np.concatenate(edges_s).astype(np.float32) if edges_s else np.empty(0, dtype=np.float32)
    if len(a):  # each edge once, with its best score
        keys = a * (int(b.max()) + 1) + b
        order_ = np.lexsort((-s, keys))
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[order_][1:] != keys[order_][:-1]
        pick = order_[first]
        a, b, s = a[pick], b[pick], s[pick]
    if approximate and len(a):
        s = exact_scores(fetch, a, b)
        keep = s >= floor
        a, b, s = a[keep], b[keep], s[keep]
    return KnnGraph(a, b, s, approximate)


def exact_scores(fetch: Fetch, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each (a, b) edge from the stored vectors, a chunk of edges at a time."""
    out = np.empty(len(a), dtype=np.float32)
    for start in range(0, len(a), CHUNK):
        ea, eb = a[start:start + CHUNK], b[start:start + CHUNK]
        wanted = np.unique(np.concatenate([ea, eb]))
        found, vectors = fetch(wanted)
        row = {int(i): r for r, i in enumerate(found.tolist())}
        ra = np.array([row.get(int(i), -1) for i in ea])
        rb = np.array([row.get(int(i), -1) for i in eb])
        both = (ra >= 0) & (rb >= 0)  # a vector deleted since the graph was built scores -inf
        scores = np.full(len(ea), -np.inf, dtype=np.float32)
        if both.any():
            scores[both] = np.einsum("ij,ij->i", vectors[ra[both]], vectors[rb[both]])
        out[start:start + len(ea)] = scores
    return out
