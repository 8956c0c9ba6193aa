"""Geometric verification of a scan's pairs, on every core.

A scan sends the pairs whose verdict geometry could change to worker processes (spawned: torch is
loaded in this one, and a fork after it can deadlock), in batches of pairs sorted by their first
image, so each worker's keypoint cache sees the same pictures again. Each worker opens the
catalog itself and reads the pictures' stored local features (judging.PictureCache); what crosses
the process boundary is image ids and paths in, ``Geometry`` out. Few pairs, and the pairs of a
process that may not start others (a Celery prefork child), are verified in this process.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import current_process, get_context

import cv2

from indexer.catalog.database import Catalog
from indexer.duplicates.judging import PictureCache, picture_cache
from indexer.library import Library
from indexer.readback import Roots, fixed_roots
from indexer.verification import Geometry, verify_keypoints
from model.embedder import available_cores

Pair = tuple[int, int]
POOL_MIN_PAIRS = 400  # below this many pairs, starting processes costs more than it saves
BATCH = 256  # pairs per task

_worker: dict = {}


def verify_pairs(library: Library, pairs: list[Pair], paths: dict[int, str],
                 workers: int | None = None, cache: PictureCache | None = None) -> dict[Pair, Geometry | None]:
    """Each pair's geometry (None where a picture has no keypoints to be had); pairs verified in
    this process use ``cache`` when given (a worker keeps one across a scan's chunks)."""
    workers = workers or available_cores()
    # a daemonic process (a Celery prefork child) may not start processes of its own
    if workers < 2 or len(pairs) < POOL_MIN_PAIRS or current_process().daemon:
        return dict(zip(pairs, _verify(cache or picture_cache(library), pairs, paths)))
    ordered = sorted(pairs)
    batches = [ordered[start:start + BATCH] for start in range(0, len(ordered), BATCH)]
    needed = [{i: paths[i] for pair in batch for i in pair} for batch in batches]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_start,
                             initargs=(library.catalog.url, library.settings.max_image_pixels,
                                       fixed_roots(library.settings.allowed_roots, library.settings.home))) as pool:
        results = pool.map(_verify_batch, batches, needed)
        return {pair: geometry for batch, found in zip(batches, results) for pair, geometry in zip(batch, found)}


def _verify(cache: PictureCache, pairs: list[Pair], paths: dict[int, str]) -> list[Geometry | None]:
    """Each pair's geometry, the first picture's mirror image tried: batches and chunks hold runs of
    first pictures, so each picture's mirrored keypoints are found in about one process, not in
    every process its neighbours reach."""
    out: list[Geometry | None] = []
    for a, b in pairs:
        first, second = cache.get(a, paths[a]), cache.get(b, paths[b])
        out.append(verify_keypoints(second, first) if first is not None and second is not None else None)
    return out


def _start(database_url: str, max_pixels: int, roots: Roots) -> None:
    """A worker process: its own catalog connection and keypoint cache, and OpenCV on one thread
    (there is a process per core: its own threads would only contend with the others)."""
    cv2.setNumThreads(1)
    _worker["cache"] = PictureCache(Catalog(database_url), max_pixels, roots)


def _verify_batch(pairs: list[Pair], paths: dict[int, str]) -> list[Geometry | None]:
    return _verify(_worker["cache"], pairs, paths)
