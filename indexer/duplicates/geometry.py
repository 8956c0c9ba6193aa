"""Geometric verification of a scan's pairs, on every core.

A scan sends the pairs whose verdict geometry could change to worker processes (spawned: torch is
loaded in this one, and a fork after it can deadlock), in batches of pairs sorted by their first
image, so each worker's keypoint cache sees the same pictures again. Each worker opens the
catalog itself and reads the pictures' stored local features (judging.PictureCache); what crosses
the process boundary is image ids and paths in, ``Geometry`` out. Few pairs, and the pairs of a
process that may not start others (a Celery prefork child), are verified in this process. A scan
verifies strongest first, in waves, skipping the pairs its near links have joined by then
(near_joins.py); each worker skips within its batch as well.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import current_process, get_context

import cv2

from indexer.catalog.database import Catalog
from indexer.duplicates.judging import PictureCache, picture_cache
from indexer.duplicates.near_joins import NearJoins
from indexer.library import Library
from indexer.readback import Roots, fixed_roots
from indexer.verification import Geometry, verify_keypoints
from model.embedder import available_cores

Pair = tuple[int, int]
POOL_MIN_PAIRS = 400  # below this many pairs, starting processes costs more than it saves
BATCH = 256  # pairs per task
WAVE = 8192  # pairs verified before the joins are brought together to skip the next wave's joined pairs

_worker: dict = {}


def verify_pairs(library: Library, pairs: list[Pair], paths: dict[int, str], workers: int | None = None,
                 cache: PictureCache | None = None, joins: NearJoins | None = None) -> dict[Pair, Geometry | None]:
    """Each pair's geometry (None where a picture has no keypoints to be had); pairs verified in
    this process use ``cache`` when given (a worker keeps one across a scan's chunks). With
    ``joins``, pairs go strongest first in waves and those whose pictures are joined by then are
    skipped (near_joins.py): they are left out of the answer and added to ``joins.skipped``."""
    workers = workers or available_cores()
    waves = [pairs] if joins is None else _waves(joins.strongest_first(pairs), WAVE)
    # a daemonic process (a Celery prefork child) may not start processes of its own
    if workers < 2 or len(pairs) < POOL_MIN_PAIRS or current_process().daemon:
        cache = cache or picture_cache(library)
        found: dict[Pair, Geometry | None] = {}
        for wave in waves:
            ordered = _unjoined(wave, joins)
            found.update(zip(ordered, _verify(cache, ordered, paths, joins)))
        return {pair: geometry for pair, geometry in found.items() if joins is None or pair not in joins.skipped}
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_start,
                             initargs=(library.catalog.url, library.settings.max_image_pixels,
                                       fixed_roots(library.settings.allowed_roots, library.settings.home))) as pool:
        found = {}
        for wave in waves:
            ordered = _unjoined(wave, joins)
            batches = [ordered[start:start + BATCH] for start in range(0, len(ordered), BATCH)]
            needed = [{i: paths[i] for pair in batch for i in pair} for batch in batches]
            parts = [None if joins is None else joins.part(batch) for batch in batches]
            for batch, (geometries, skipped) in zip(batches, pool.map(_verify_batch, batches, needed, parts)):
                for pair, geometry in zip(batch, geometries):
                    if pair in skipped:
                        joins.skipped.add(pair)
                        continue
                    found[pair] = geometry
                    if joins is not None:
                        joins.settle(*pair, geometry)
        return found


def _waves(pairs: list[Pair], size: int) -> list[list[Pair]]:
    return [pairs[start:start + size] for start in range(0, len(pairs), size)]


def _unjoined(wave: list[Pair], joins: NearJoins | None) -> list[Pair]:
    """The wave's pairs not joined yet (the others are skipped), sorted by their first picture: a
    batch then holds runs of first pictures (see ``_verify``)."""
    if joins is None:
        return sorted(wave)
    kept = []
    for pair in wave:
        if joins.joined(*pair):
            joins.skipped.add(pair)
        else:
            kept.append(pair)
    return sorted(kept)


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
    """A worker process: its own catalog connection and keypoint cache, and OpenCV on one thread
    (there is a process per core: its own threads would only contend with the others)."""
    cv2.setNumThreads(1)
    _worker["cache"] = PictureCache(Catalog(database_url), max_pixels, roots)


def _verify_batch(pairs: list[Pair], paths: dict[int, str],
                  joins: NearJoins | None) -> tuple[list[Geometry | None], set[Pair]]:
    """A batch's geometry in a worker process, and the pairs it skipped as joined."""
    return _verify(_worker["cache"], pairs, paths, joins), set() if joins is None else joins.skipped
