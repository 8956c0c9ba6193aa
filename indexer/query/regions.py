"""Region queries: find the images that contain a box of a query picture, and where.

The box is cut from the query and embedded on its own at the model's input size, so even a small
box covers a full patch grid. Its patch grid is pooled to a few cells (2 to 6 on the long side: a
region seen at the scale of the stored 8 x 8 cells). Candidates come from two places: votes of the
query's cells in the collection's patch store (each cell's nearest stored cells, best per image;
with a Qdrant server's multivector patch layout, the images nearest to the query cells by MAX_SIM),
and the nearest images to the crop's global descriptor. Each candidate is then re-ranked exactly:
every scale of the query grid slides over the candidate's stored grid, a window scoring the mean
cosine of aligned cells; the best window is the hit's box, in the hit's own pixels. The candidates
are ranked by reciprocal-rank fusion of three orders: the crop descriptor's similarity, the patch
votes, and how many of the box's ORB patches have a twin among the candidate's stored keypoints.
The first VERIFY_TOP of that order are then verified on their local features stored at indexing
(no file is read): ORB keypoints of the box matched to keypoints found afresh, densely, on the
candidate's stored grey levels, one homography fitted (indexer/verification.py). A candidate
that shows the region (at least MIN_INLIERS agreeing matches) gets the box the homography maps
the query box to, and ranks above every unverified one: its score is 1 + inliers / (inliers + 20),
in (1, 2); an unverified hit's score is its fused rank score, below 0.3.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select

from indexer.catalog.models import Image
from indexer.images import image_metadata, read_picture
from indexer.library import Library
from indexer.query.boxes import check_box
from indexer.query.opening import open_for_query, read_query_file
from indexer.query.search import STOP_AFTER_COPIES, QueryResult, SearchHit, check_k
from indexer.query.verified import stored_keypoints
from indexer.stores import VectorStore
from indexer.stores.patches import PATCH_SLOTS, image_of_patch, patch_ids, pool_grid
from indexer.verification import Keypoints, close_patches, descriptor_prefixes, homography, match, orb_keypoints

SCALES = (2, 3, 4, 5, 6)  # query grid sizes (long side, in stored cells) tried against each candidate
VOTE_SCALE = 3  # the query grid whose cells vote for candidates
CELL_NEIGHBOURS = 200  # stored cells fetched per query cell
CANDIDATES = 64  # images re-ranked exactly
# Candidates are ranked by reciprocal-rank fusion of three orders (the crop descriptor's similarity,
# the patch votes, the shared ORB patches); the first VERIFY_TOP of that order are verified
# (docs/BENCHMARKS.md, "Region queries", for the measured choices below).
FUSION_K = 10
VERIFY_TOP = 64  # candidates verified, in fused order
VERIFY_ROUND = 8  # candidates verified between two looks at how many show the region
VERIFY_SIDE = 512  # the stored grey levels are scaled up to this long side for verification
REGION_KEYPOINTS = 2000  # found on a candidate's grey levels: a region of 10% of it still holds ~200
QUERY_SIDE = 240  # the box is scaled to this long side for its keypoints, near its size in a candidate
QUERY_KEYPOINTS = 300
PROBE_SIDE = 128  # the box's long side for the third order, its patches against the stored ones
PROBE_KEYPOINTS = 300
STORED_PATCH_SIZE = 31  # ORB's default, the stored keypoints' (their descriptors compare only at it)
MIN_INLIERS = 10
MIN_INLIER_SHARE = 0.25
VERIFY_THREADS = 4


@dataclass
class RegionQuery:
    """A picture and a box in its pixels (as displayed): x0, y0, x1, y1."""

    picture: PILImage.Image
    box: list[int]


def window_scores(query: np.ndarray, target: np.ndarray) -> np.ndarray | None:
    """Slide ``query`` (qh, qw, D) over ``target`` (R, C, D): the mean cosine of aligned cells at
    every top-left cell, an (R-qh+1, C-qw+1) array; None when the query is larger than the target."""
    qh, qw, d = query.shape
    rows, cols, _ = target.shape
    if qh > rows or qw > cols:
        return None
    sims = (query.reshape(-1, d) @ target.reshape(-1, d).T).reshape(qh, qw, rows, cols)
    out_h, out_w = rows - qh + 1, cols - qw + 1
    scores = np.zeros((out_h, out_w), dtype=np.float32)
    for a in range(qh):
        for b in range(qw):
            scores += sims[a, b, a:a + out_h, b:b + out_w]
    return scores / (qh * qw)


def match_grid(scales: list[np.ndarray], target: np.ndarray) -> tuple[float, tuple[int, int, int, int]]:
    """Where the query region lies in ``target``: (best window's mean cosine, (row, col, rows, cols)).

    Small windows score higher by chance (fewer cells, more positions), so the scale is chosen by
    how far its best window stands out from that scale's other windows (a z-score), not by the raw
    score: on bench/regions.py that took the mean IoU of the matched box from 0.33 to 0.41."""
    best = (-np.inf, (0, 0, target.shape[0], target.shape[1]))
    best_key = -np.inf
    for query in scales:
        scores = window_scores(query, target)
        if scores is None:
            continue
        i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
        key = (scores[i, j] - scores.mean()) / (scores.std() + 0.02) if scores.size > 1 else 0.0
        if key > best_key:
            best_key, best = key, (float(scores[i, j]), (int(i), int(j), query.shape[0], query.shape[1]))
    return best


def cells_to_box(cells: tuple[int, int, int, int], grid_rows: int, grid_cols: int, width: int, height: int) -> list[int]:
    """A window of grid cells as a pixel box of the picture the grid covers."""
    i, j, h, w = cells
    return [round(j * width / grid_cols), round(i * height / grid_rows),
            round((j + w) * width / grid_cols), round((i + h) * height / grid_rows)]


def patch_candidates(patches: VectorStore, cells: np.ndarray, want: int) -> dict[int, float]:
    """Image id → patch score of the images the query cells point at. Patch cells stored as points:
    each cell's CELL_NEIGHBOURS nearest stored cells vote, an image scoring the sum over query cells
    of its best vote. In Qdrant's multivector layout the server ranks images by MAX_SIM of all the
    query cells (the same sum, over every cell of each image) and the best ``want`` come back."""
    if patches.patch_layout == "multivector":
        ids, scores = patches.search_images(cells, want)
        return dict(zip(ids.tolist(), scores.tolist()))
    votes: dict[int, dict[int, float]] = {}
    found = patches.search(cells, CELL_NEIGHBOURS)
    for q in range(len(cells)):
        for cell_id, score in zip(found.ids[q].tolist(), found.scores[q].tolist()):
            if cell_id < 0:
                continue
            image_id = int(image_of_patch(np.array([cell_id]))[0])
            best = votes.setdefault(image_id, {})
            best[q] = max(best.get(q, -1.0), float(score))
    return {image_id: sum(best.values()) for image_id, best in votes.items()}


def search_region(library: Library, collection_name: str, query: RegionQuery, k: int = 10,
                  exclude_ids: set[int] | None = None, exclude_path: str | None = None) -> list[SearchHit]:
    """The images of the collection that contain the query's box, best first, each with the box
    where it matched (in that image's pixels)."""
    check_k(k)
    picture = query.picture
    box = check_box(query.box, picture.width, picture.height)
    crop = picture.crop(tuple(box))
    embedding = library.embedder.embed([crop])
    grid, crop_vector = embedding.patches[0], embedding.vectors[:1]
    scales = [pool_grid(grid, s) for s in SCALES]
    voters = pool_grid(grid, VOTE_SCALE)
    exclude = set(exclude_ids or ())
    with library.catalog.session() as s:
        collection, stores = open_for_query(library, s, collection_name)
        if stores is None:
            return []
        cells = voters.reshape(-1, voters.shape[-1]).astype(np.float32)
        patch_scores = patch_candidates(stores.patches, cells, CANDIDATES + len(exclude))
        ranked = sorted(patch_scores, key=lambda i: -patch_scores[i])
        candidates = [i for i in ranked if i not in exclude][:CANDIDATES]
        near = stores.global_.search(crop_vector.astype(np.float32), CANDIDATES)
        candidates += [int(i) for i in near.ids[0].tolist() if i >= 0 and int(i) not in exclude]
        candidates = list(dict.fromkeys(candidates))
        rows = {r.id: r for r in s.scalars(select(Image).where(
            Image.id.in_(candidates), Image.collection_id == collection.id, Image.status == "indexed",
            Image.patch_rows.is_not(None)))}
        got_ids, global_vectors = stores.global_.fetch(np.array(candidates, dtype=np.int64))
        global_sim = dict(zip(got_ids.tolist(), (np.asarray(global_vectors, dtype=np.float32) @ crop_vector[0]).tolist()))
        hits: list[SearchHit] = []
        for image_id in candidates:
            row = rows.get(image_id)
            if row is None or row.path == exclude_path or image_id not in global_sim:
                continue
            wanted = patch_ids(image_id, row.patch_rows, row.patch_cols)
            got, vectors = stores.patches.fetch(wanted)
            if len(got) != len(wanted):
                continue  # its cells are not all stored (being re-indexed): skip rather than guess
            order = np.argsort(got % PATCH_SLOTS)
            target = np.asarray(vectors, dtype=np.float32)[order].reshape(row.patch_rows, row.patch_cols, -1)
            patch_score, cells = match_grid(scales, target)
            if not np.isfinite(patch_score):
                continue
            hit_box = cells_to_box(cells, row.patch_rows, row.patch_cols, row.width or 1, row.height or 1)
            hits.append(SearchHit(image_id, row.path, 0.0, hit_box, image_metadata(row)))
        features = stored_keypoints(s, [h.image_id for h in hits])
    box_grey = np.asarray(crop.convert("L"))
    shared = shared_patch_counts(box_grey, [h.image_id for h in hits], features)
    fuse_orders(hits, [global_sim, patch_scores, shared])
    verify_hits(box_grey, hits[:VERIFY_TOP], features, enough=max(k, STOP_AFTER_COPIES))
    hits.sort(key=lambda h: -h.score)
    return hits[:k]


def shared_patch_counts(box_grey: np.ndarray, image_ids: list[int], features: Mapping[int, Keypoints]) -> dict[int, int]:
    """Image id → how many of the box's ORB patches (``box_grey``: its grey levels) have a near twin among the image's stored ones
    (``verification.close_patches``), the box taken at PROBE_SIDE, about its size in a stored
    picture; an image without stored features counts none."""
    probe = descriptor_prefixes(region_keypoints(box_grey, PROBE_SIDE, PROBE_KEYPOINTS, patch_size=STORED_PATCH_SIZE))
    counts = {}
    for image_id in image_ids:
        try:
            counts[image_id] = close_patches(probe, descriptor_prefixes(features[image_id]))
        except KeyError:
            counts[image_id] = 0
    return counts


def fuse_orders(hits: list[SearchHit], scores: list[dict[int, float]]) -> None:
    """Score the hits in place by reciprocal-rank fusion of the orders ``scores`` give them (an
    image missing from one ranks last there), best first."""
    fused = {h.image_id: 0.0 for h in hits}
    for score in scores:
        for rank, hit in enumerate(sorted(hits, key=lambda h: -score.get(h.image_id, -np.inf))):
            fused[hit.image_id] += 1.0 / (FUSION_K + rank)
    for hit in hits:
        hit.score = fused[hit.image_id]
    hits.sort(key=lambda h: -h.score)


def region_keypoints(grey: np.ndarray, side: int, features: int, patch_size: int = 15) -> Keypoints:
    """ORB keypoints of grey levels scaled (up or down) to ``side`` pixels on their long side."""
    height, width = grey.shape[:2]
    scale = side / max(width, height)
    sized = cv2.resize(grey, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
    return orb_keypoints(sized, cv2.ORB_create(nfeatures=features, edgeThreshold=patch_size, patchSize=patch_size))


def verify_hits(box_grey: np.ndarray, hits: list[SearchHit], features: Mapping[int, Keypoints],
                enough: int | None = None) -> None:
    """Re-score in place the hits whose stored features show the region (``box_grey``: the box's
    grey levels), with the box the match maps it to, best first on a few threads (OpenCV releases
    the GIL); with ``enough``, stop once that many show it (a later one could only swap places)."""
    query = region_keypoints(box_grey, QUERY_SIDE, QUERY_KEYPOINTS)
    todo = [hit for hit in hits if hit.image_id in features]
    if len(query.points) < MIN_INLIERS or not todo:
        return
    shown = 0
    with ThreadPoolExecutor(max_workers=VERIFY_THREADS) as pool:
        for start in range(0, len(todo), VERIFY_ROUND):
            batch = todo[start:start + VERIFY_ROUND]
            for hit, result in zip(batch, pool.map(lambda hit: _verified_box(query, hit, features), batch)):
                if result is not None:
                    count, hit.box = result
                    hit.score = 1.0 + count / (count + 20.0)
                    shown += 1
            if enough is not None and shown >= enough:
                return


def _verified_box(query: Keypoints, hit: SearchHit, features: Mapping[int, Keypoints]) -> tuple[int, list[int]] | None:
    """(agreeing matches, the query box mapped into the hit's pixels) when the hit's stored grey
    levels show the region, else None (a damaged record keeps its unverified rank)."""
    try:
        stored = features[hit.image_id]
    except KeyError:
        return None
    if stored.grey is None:
        return None
    target = region_keypoints(stored.grey, VERIFY_SIDE, REGION_KEYPOINTS)
    pairs = match(query, target)
    h, inliers = homography(query, target, pairs)
    count = int(inliers.sum())
    if h is None or count < MIN_INLIERS or count < MIN_INLIER_SHARE * len(pairs):
        return None
    # the box's corners in the scaled crop's pixels, the frame the homography maps from
    corners = np.array([[0, 0, 1], [query.width, 0, 1], [query.width, query.height, 1], [0, query.height, 1]],
                       dtype=np.float64)
    mapped = corners @ h.T
    if np.any(mapped[:, 2] <= 1e-9):
        return None  # a corner maps behind the camera: not a plausible placement of the region
    mapped = mapped[:, :2] / mapped[:, 2:3]
    width, height = hit.metadata.get("width") or target.width, hit.metadata.get("height") or target.height
    fx, fy = width / target.width, height / target.height
    box = [max(0, round(mapped[:, 0].min() * fx)), max(0, round(mapped[:, 1].min() * fy)),
           min(width, round(mapped[:, 0].max() * fx)), min(height, round(mapped[:, 1].max() * fy))]
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        return None
    return count, box


def region_by_id(library: Library, collection_name: str, image_id: int, box: list[int], k: int = 10) -> list[SearchHit]:
    """A region query whose picture is an indexed image (itself left out of the results)."""
    picture = read_picture(library, image_id, collection_name)
    return search_region(library, collection_name, RegionQuery(picture, box), k, exclude_ids={image_id})


def search_region_files(library: Library, collection_name: str, files: list[str | os.PathLike], box: list[int],
                        k: int = 10) -> list[QueryResult]:
    """``dinoseek search IMAGE... --box``: the same box of each query file (in argument order); a
    query file that is itself indexed is left out of its results."""
    library.require_collection(collection_name)  # a missing collection fails before the model loads
    out = []
    for f in files:
        picture = read_query_file(library, f).image
        clipped = check_box(box, picture.width, picture.height)
        hits = search_region(library, collection_name, RegionQuery(picture, clipped), k,
                             exclude_path=os.path.abspath(str(f)))
        out.append(QueryResult(str(f), hits, clipped))
    return out
