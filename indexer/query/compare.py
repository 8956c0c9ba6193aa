"""Two indexed pictures compared: the verdict search and the scans give the pair, with what explains
it — the matches the homography agrees with (lines to draw), where each picture lies in the other,
a heatmap per picture of how well its patch cells (the backbone's pooled patch tokens) find a
match in the other, and the metadata that differs. Read from the stored vectors and local
features; a file is read only for a picture indexed without features."""

from __future__ import annotations

import os

import numpy as np
from sqlalchemy.orm import Session

from indexer.background import collection_panel
from indexer.catalog.models import Collection, Image
from indexer.errors import InvalidRequest, NotFound
from indexer.images import image_json, image_metadata, read_picture
from indexer.library import Library
from indexer.query.opening import open_for_query
from indexer.query.verified import Candidate, VerifiedQuery, judge, stored_keypoints
from indexer.stores import CollectionStores
from indexer.stores.patches import patch_ids
from indexer.verdicts import calibration_for, model_near_threshold, normalise
from indexer.verification import VERIFY_SIDE, Keypoints, inlier_matches, keypoints, verify_keypoints

MAX_MATCH_LINES = 200  # agreeing matches sent for a viewer to draw


def _row(s: Session, image_id: int) -> Image:
    row = s.get(Image, image_id)
    if row is None:
        raise NotFound(f"no image with id {image_id}")
    if row.status != "indexed":
        raise InvalidRequest(f"image {image_id} ({row.path}) is {row.status}, not indexed")
    return row


def _points(library: Library, s: Session, row: Image) -> Keypoints:
    stored = stored_keypoints(s, [row.id]).get(row.id)
    return stored if stored is not None else keypoints(read_picture(library, row.id, target_long_side=VERIFY_SIDE))


def _heatmaps(stores: CollectionStores, a: Image, b: Image) -> dict | None:
    """Per patch cell of each picture, its best cosine with the other's cells (0..1), as row lists."""
    if not (a.patch_rows and a.patch_cols and b.patch_rows and b.patch_cols):
        return None
    cells = []
    for row in (a, b):
        found, vectors = stores.patches.fetch(patch_ids(row.id, row.patch_rows, row.patch_cols))
        if len(found) != row.patch_rows * row.patch_cols:
            return None
        order = np.argsort(found)  # patch ids are row-major: sorted ids are the grid's order
        v = np.asarray(vectors, dtype=np.float32)[order]
        cells.append(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12))
    similarity = np.clip(cells[0] @ cells[1].T, 0.0, 1.0)
    heat_a = similarity.max(axis=1).reshape(a.patch_rows, a.patch_cols)
    heat_b = similarity.max(axis=0).reshape(b.patch_rows, b.patch_cols)
    return {"a": {"rows": a.patch_rows, "cols": a.patch_cols, "values": np.round(heat_a, 3).tolist()},
            "b": {"rows": b.patch_rows, "cols": b.patch_cols, "values": np.round(heat_b, 3).tolist()}}


def _differs(a: Image, b: Image) -> dict:
    ma, mb = image_metadata(a), image_metadata(b)
    out = {k: [ma[k], mb[k]] for k in ma if ma[k] != mb[k] and k != "indexed_at"}
    folders = [os.path.dirname(a.path), os.path.dirname(b.path)]
    if folders[0] != folders[1]:
        out["folder"] = folders
    return out


def compare_images(library: Library, a_id: int, b_id: int) -> dict:
    """The pair's verdict and evidence (see the module); both images indexed in one collection."""
    if a_id == b_id:
        raise InvalidRequest(f"compare needs two different images, got {a_id} twice")
    with library.catalog.session() as s:
        a, b = _row(s, a_id), _row(s, b_id)
        if a.collection_id != b.collection_id:
            raise InvalidRequest(f"images {a_id} and {b_id} are in different collections: their vectors do not compare")
        collection, stores = open_for_query(library, s, s.get(Collection, a.collection_id).name)
        if stores is None:
            raise InvalidRequest(f"collection {collection.name!r} has no vectors yet")
        found, vectors = stores.global_.fetch(np.array([a_id, b_id]))
        by_id = dict(zip(found.tolist(), np.asarray(vectors, dtype=np.float32)))
        if a_id not in by_id or b_id not in by_id:
            raise NotFound(f"image {a_id if a_id not in by_id else b_id} has no stored vector; run `dinoseek index`")
        descriptor = float(by_id[a_id] @ by_id[b_id])
        cal = calibration_for(library.embedder.vit, model_near_threshold(library.embedder.vit))
        backgrounds = collection_panel(s, collection.id, stores.global_).background_of(found, vectors)
        points_a, points_b = _points(library, s, a), _points(library, s, b)
        geometry = verify_keypoints(points_a, points_b)
        candidate = Candidate(a_id, descriptor, normalise(descriptor, [backgrounds.get(a_id), backgrounds.get(b_id)],
                                                          cal.beta), a.phash, a.width or points_a.width,
                              a.height or points_a.height)
        query = VerifiedQuery(points_b, b.width or points_b.width, b.height or points_b.height, b.phash)
        evidence = judge(cal, query, candidate, points_a, geometry)
        exact = a.sha256 is not None and a.sha256 == b.sha256
        lines = inlier_matches(points_a, points_b, geometry)[:MAX_MATCH_LINES]
        scale = np.array([candidate.width / points_a.width, candidate.height / points_a.height,
                          query.width / points_b.width, query.height / points_b.height], dtype=np.float32)
        doc = {"a": image_json(a, collection.name), "b": image_json(b, collection.name),
               "verdict": "copy" if exact else evidence.verdict, "exact": exact,
               "copy_probability": 1.0 if exact else round(evidence.copy_probability, 4),
               "descriptor": round(descriptor, 6), "inliers": geometry.inliers, "matches_found": geometry.matches,
               "mirrored": geometry.mirrored, "box_in_b": evidence.query_box, "box_in_a": evidence.result_box,
               "matches": np.round(lines * scale, 1).tolist(), "heatmap": _heatmaps(stores, a, b),
               "differs": _differs(a, b)}
    return doc
