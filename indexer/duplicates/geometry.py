"""Geometric verification of a scan's pairs, on every core.

A scan sends the pairs whose verdict geometry could change to worker processes (spawned: torch is
loaded in this one, and a fork after it can deadlock), in batches of pairs sorted by their first
image, so each worker's keypoint cache sees the same pictures again. Each worker opens the
catalog itself and reads the pictures' stored local features (judging.PictureCache); what crosses
the process boundary is image ids and paths in, ``Geometry`` out. Few pairs, and the pairs of a
process that may not start others (a Celery prefork child), are verified in this process. A scan
verifies block by block of pictures its pairs bring together (``local_order``: each picture read
about once, though the collection outgrows the cache), strongest first within a block, in waves of
pairs that could each join two sets, skipping the pairs its near links have joined by then
(near_joins.py); each worker skips within its batch as well.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import current_process, get_context

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import reverse_cuthill_mckee

from indexer.catalog.database import Catalog
from indexer.duplicates.judging import KEYPOINT_CACHE, PictureCache, picture_cache
from indexer.duplicates.near_joins import NearJoins
from indexer.library import Library
from indexer.readback import Roots, fixed_roots
from indexer.verification import Geometry, match_by_faiss_here, verify_keypoints
from model.embedder import available_cores

Pair = tuple[int, int]
POOL_MIN_PAIRS = 400  # below this many pairs, starting processes costs more than it saves
BATCH = 128  # pairs per task
BLOCK = KEYPOINT_CACHE // 4  # pictures whose pairs are verified together (local_order): a few blocks to a cache
# pairs verified before the joins are brought together to skip the next wave's joined pairs: a wave
# touches more pictures than it holds pairs (near_joins.waves), and they must stay in the cache
WAVE = BLOCK
CLUSTER = 256  # pictures at most that local_order clusters before laying the clusters out

_worker: dict = {}


class GeometryPool:
    """Worker processes for the geometry of one scan, started on first use and kept for all of its
    stages (its pairs, then the support check's cross pairs, support.py): a start costs about two
    seconds (each process imports the service), and their keypoint caches stay warm between stages.
    Not started where it cannot help: one core, few pairs, or a process that may not start others
    (a Celery prefork child is daemonic)."""

    def __init__(self, library: Library, workers: int | None = None) -> None:
        self.library = library
        self.workers = workers or available_cores()
        self.executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> GeometryPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def takes(self, pairs: int) -> bool:
        """Whether ``pairs`` pairs are verified in the worker processes, not in this one."""
        return self.workers >= 2 and pairs >= POOL_MIN_PAIRS and not current_process().daemon

    def started(self) -> ProcessPoolExecutor:
        if self.executor is None:
            library = self.library
            self.executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=get_context("spawn"), initializer=_start,
                initargs=(library.catalog.url, library.settings.max_image_pixels,
                          fixed_roots(library.settings.allowed_roots, library.settings.home)))
        return self.executor

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown()
            self.executor = None


def verify_pairs(library: Library, pairs: list[Pair], paths: dict[int, str], workers: int | None = None,
                 cache: PictureCache | None = None, joins: NearJoins | None = None,
                 pool: GeometryPool | None = None) -> dict[Pair, Geometry | None]:
    """Each pair's geometry (None where a picture has no keypoints to be had), on ``pool``'s
    processes (else on ones started for this call alone, ``workers`` of them); pairs verified in
    this process use ``cache`` when given (a worker keeps one across a scan's chunks). With
    ``joins``, pairs go in ``verification_order``, in waves (``NearJoins.waves``), and those whose
    pictures are joined by then are skipped: they are left out of the answer and added to
    ``joins.skipped``."""
    if pool is None:
        with GeometryPool(library, workers) as own:
            return verify_pairs(library, pairs, paths, cache=cache, joins=joins, pool=own)
    waves = [pairs] if joins is None else joins.waves(verification_order(joins, pairs), WAVE)
    if not pool.takes(len(pairs)):
        cache = cache or picture_cache(library)
        found: dict[Pair, Geometry | None] = {}
        for wave in waves:
            ordered = sorted(wave)  # runs of first pictures (see ``_verify``)
            found.update(zip(ordered, _verify(cache, ordered, paths, joins)))
        return {pair: geometry for pair, geometry in found.items() if joins is None or pair not in joins.skipped}
    executor = pool.started()
    found = {}
    for wave in waves:
        ordered = sorted(wave)  # runs of first pictures (see ``_verify``)
        batches = [ordered[start:start + BATCH] for start in range(0, len(ordered), BATCH)]
        needed = [{i: paths[i] for pair in batch for i in pair} for batch in batches]
        parts = [None if joins is None else joins.part(batch) for batch in batches]
        for batch, (geometries, skipped) in zip(batches, executor.map(_verify_batch, batches, needed, parts)):
            for pair, geometry in zip(batch, geometries):
                if pair in skipped:
                    joins.skipped.add(pair)
                    continue
                found[pair] = geometry
                if joins is not None:
                    joins.settle(*pair, geometry)
    return found


def verification_order(joins: NearJoins, pairs: list[Pair]) -> list[Pair]:
    """The order a scan verifies ``pairs`` in (in-process and as a job's chunks): the pairs that
    could join two sets first, strongest first (near_joins.py), block by block of pictures that
    those pairs bring together (``local_order``)."""
    return local_order(joins.spanning_first(pairs))


def local_order(pairs: list[Pair], block: int = BLOCK, cluster: int = CLUSTER) -> list[Pair]:
    """``pairs`` block by block of ``block`` pictures, each block's in their order here. The
    pictures are clustered by the pairs in order (two clusters merge while they hold ``cluster``
    pictures at most: a picture's copies and their neighbours) and the clusters laid out so that
    those sharing pairs lie close (reverse Cuthill-McKee); a pair falls in the block of its later
    picture. A process then reads each picture about once, while its block's pairs are verified,
    instead of once per wave that reaches it: with a collection larger than the keypoint cache,
    it was read again and its mirror image found again nearly every time."""
    if len(pairs) < 2:
        return list(pairs)
    index = np.unique(np.asarray(pairs, dtype=np.int64), return_inverse=True)[1].reshape(-1, 2)
    cluster_of = _capped_clusters(index, int(index.max()) + 1, cluster)
    clusters = int(cluster_of.max()) + 1
    links = cluster_of[index]
    graph = coo_matrix((np.ones(len(links), dtype=np.int32), (links[:, 0], links[:, 1])), shape=(clusters, clusters))
    rank = np.empty(clusters, dtype=np.int64)
    rank[reverse_cuthill_mckee(graph.tocsr(), symmetric_mode=False)] = np.arange(clusters)
    position = np.empty(len(cluster_of), dtype=np.int64)
    position[np.argsort(rank[cluster_of], kind="stable")] = np.arange(len(cluster_of))
    blocks = position[index].max(axis=1) // block
    return [pairs[i] for i in np.argsort(blocks, kind="stable")]


def _capped_clusters(index: np.ndarray, pictures: int, cap: int) -> np.ndarray:
    """Each picture's cluster (0..n-1): pairs taken in order join their pictures' clusters while
    the two hold ``cap`` pictures at most together."""
    parent = list(range(pictures))
    size = [1] * pictures

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in index.tolist():
        ra, rb = find(a), find(b)
        if ra != rb and size[ra] + size[rb] <= cap:
            parent[rb] = ra
            size[ra] += size[rb]
    return np.unique([find(x) for x in range(pictures)], return_inverse=True)[1]


def _verify(cache: PictureCache, pairs: list[Pair], paths: dict[int, str],
            joins: NearJoins | None = None) -> list[Geometry | None]:
    """Each pair's geometry, the first picture's mirror image tried: batches and chunks hold runs of
    first pictures, so each picture's mirrored keypoints are found in about one process, not in
    every process its neighbours reach. With ``joins``, a pair joined by the pairs before it is
    skipped (None here, and added to ``joins.skipped``)."""
    out: list[Geometry | None] = []
    for a, b in pairs:
        if joins is not None and joins.joined(a, b):
            joins.skipped.add((a, b))
            out.append(None)
            continue
        first, second = cache.get(a, paths[a]), cache.get(b, paths[b])
        out.append(verify_keypoints(second, first) if first is not None and second is not None else None)
        if joins is not None:
            joins.settle(a, b, out[-1])
    return out


def _start(database_url: str, max_pixels: int, roots: Roots) -> None:
    """A worker process: its own catalog connection and keypoint cache, and OpenCV (and FAISS's
    matching, where installed) on one thread (there is a process per core: its own threads would
    only contend with the others)."""
    cv2.setNumThreads(1)
    match_by_faiss_here()
    _worker["cache"] = PictureCache(Catalog(database_url), max_pixels, roots)


def _verify_batch(pairs: list[Pair], paths: dict[int, str],
                  joins: NearJoins | None) -> tuple[list[Geometry | None], set[Pair]]:
    """A batch's geometry in a worker process, and the pairs it skipped as joined."""
    return _verify(_worker["cache"], pairs, paths, joins), set() if joins is None else joins.skipped
