"""Verifying search candidates against the query: is each an edited copy of it, and where.

The descriptor proposes; the stored local features decide. Each candidate's keypoints (stored at
indexing) are matched to the query's and one homography fitted (indexer/verification.py); the
pair's evidence (descriptor cosine, that cosine less both pictures' backgrounds, pHash agreement,
geometry), as a duplicate check weighs it, goes through the backbone's fitted
verdict model (indexer/verdicts.py) for a calibrated copy probability. A copy is a
probability of at least one half; a pair that is not a copy but shows the same scene (the
related model) is ``same scene``. The homography gives the two boxes: where the result appears
in the query and where the query appears in the result.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer.catalog.models import ImageFeatures
from indexer.errors import InvalidRequest
from indexer.framing import Window
from indexer.ingest import local_features
from indexer.ingest.phash import hash_similarity
from indexer.verdicts import Calibration, PairEvidence
from indexer.verification import Geometry, Keypoints, grey_levels, orb_keypoints, verify_keypoints

VERIFY_TOP = 40  # descriptor candidates verified per query by default (docs/BENCHMARKS.md, "Verified search")
MAX_VERIFY_TOP = 200
QUERY_SIDE = 480  # long side the query's keypoints are found at: a framed copy's photo is a part of it
QUERY_KEYPOINTS = 800
VERIFY_THREADS = 2
VERIFY_ROUND = 2 * VERIFY_THREADS  # candidates verified between two looks at how many copies are found
# candidates (in descriptor order) also verified against the mirrored query: the descriptor is
# mirror-invariant, so a mirrored copy ranks among the first (bench/quality.py: flip r@1 1.00)
MIRROR_TOP = 5
VERDICTS = {"near": "copy", "similar": "same scene"}


@dataclass(frozen=True)
class Candidate:
    """An indexed image to verify: its id, its descriptor cosine to the query, its pHash and its
    size in pixels (the boxes are given in them)."""

    image_id: int
    descriptor: float
    normalised: float | None  # the cosine less the two pictures' backgrounds (indexer/verdicts.py)
    phash: int | None
    width: int
    height: int


@dataclass(frozen=True)
class CopyEvidence:
    """What verification found for one result: the verdict (``copy``, ``same scene`` or None),
    the calibrated probability that it is a copy, the agreeing keypoint matches, and the boxes
    (x0, y0, x1, y1): where the result appears in the query (query pixels) and where the query
    appears in the result (result pixels); None without a homography."""

    verdict: str | None
    copy_probability: float
    inliers: int
    query_box: list[int] | None
    result_box: list[int] | None
    mirrored: bool = False

    def to_json(self) -> dict:
        return {"verdict": self.verdict, "copy_probability": round(self.copy_probability, 4), "inliers": self.inliers,
                "query_box": self.query_box, "result_box": self.result_box, "mirrored": self.mirrored}


@dataclass
class VerifiedQuery:
    """The query as verification sees it: its keypoints (with their grey levels), its size in
    pixels as the client sees it, and its pHash (None when unknown)."""

    points: Keypoints
    width: int
    height: int
    phash: int | None


def check_verify_top(value: int) -> int:
    """``value`` when it is a candidate count this service verifies, else InvalidRequest naming it."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_VERIFY_TOP:
        raise InvalidRequest(f"verify_top must be an integer from 1 to {MAX_VERIFY_TOP}, got {value!r}")
    return value


def query_keypoints(picture: PILImage.Image, windows: list[Window]) -> Keypoints:
    """The query's keypoints at QUERY_SIDE: more of them than an indexed picture keeps, so the
    photo inside a frame still holds enough; with its frame's window (from its content
    ``windows``), as an indexed picture keeps it, so its frame matches no other frame."""
    points = orb_keypoints(grey_levels(picture, QUERY_SIDE), cv2.ORB_create(nfeatures=QUERY_KEYPOINTS))
    points.window = local_features.framed_window(picture, windows=windows)
    return points


class StoredKeypoints(Mapping[int, Keypoints]):
    """The stored local features of some images, read in one catalog query and decoded on first
    use (a search may stop verifying long before its last candidate); an image without them, or
    with a damaged record, is absent (it stays unverified, in its descriptor place)."""

    def __init__(self, session: Session, ids: Iterable[int]) -> None:
        self.raw = dict(session.execute(select(ImageFeatures.image_id, ImageFeatures.data)
                                        .where(ImageFeatures.image_id.in_(list(ids)))).tuples().all())
        self.decoded: dict[int, Keypoints | None] = {}

    def __getitem__(self, image_id: int) -> Keypoints:
        if image_id not in self.decoded:
            try:
                self.decoded[image_id] = local_features.decode(self.raw[image_id])
            except local_features.FeaturesError:
                self.decoded[image_id] = None
        points = self.decoded[image_id]
        if points is None:
            raise KeyError(image_id)
        return points

    def __contains__(self, image_id: object) -> bool:
        """Whether the image has a record (decoding it only when used)."""
        return image_id in self.raw

    def __iter__(self) -> Iterator[int]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


def stored_keypoints(session: Session, ids: Iterable[int]) -> StoredKeypoints:
    """The stored local features of the images that have them (decoded lazily: StoredKeypoints)."""
    return StoredKeypoints(session, ids)


def verify_candidates(cal: Calibration, query: VerifiedQuery, candidates: list[Candidate],
                      points: Mapping[int, Keypoints], enough: int | None = None) -> dict[int, CopyEvidence]:
    """Evidence for every candidate that has keypoints, by image id; ``candidates`` best first.
    With ``enough``, verification stops once that many are verified copies: they are the answer
    (verified copies rank first), and the candidates after them are left unverified."""
    def one(rank: int, candidate: Candidate) -> tuple[int, CopyEvidence | None]:
        stored = points.get(candidate.image_id)
        if stored is None:  # a damaged record
            return candidate.image_id, None
        geometry = verify_keypoints(stored, query.points, try_mirror=rank < MIRROR_TOP)
        return candidate.image_id, judge(cal, query, candidate, stored, geometry)

    todo = [c for c in candidates if c.image_id in points]
    step = len(todo) if enough is None else VERIFY_ROUND
    out: dict[int, CopyEvidence] = {}
    with ThreadPoolExecutor(VERIFY_THREADS) as pool:  # OpenCV releases the GIL while matching
        for start in range(0, len(todo), step):
            part = todo[start:start + step]
            found = pool.map(one, range(start, start + len(part)), part) if len(part) >= 2 else map(one, [start], part)
            out.update((image_id, evidence) for image_id, evidence in found if evidence is not None)
            if enough is not None and sum(e.verdict == "copy" for e in out.values()) >= enough:
                break
    return out


def judge(cal: Calibration, query: VerifiedQuery, candidate: Candidate, points: Keypoints,
          geometry: Geometry) -> CopyEvidence:
    """The verdict model's reading of one verified pair, with its boxes."""
    hash_ = hash_similarity(query.phash, candidate.phash) if query.phash is not None and candidate.phash is not None else None
    evidence = cal.judge(PairEvidence(candidate.descriptor, candidate.normalised, hash_, geometry))
    query_box = result_box = None
    if geometry.transform is not None:
        query_box, result_box = boxes(geometry, points, query, candidate)
    return CopyEvidence(VERDICTS.get(evidence.verdict), float(evidence.copy_probability), geometry.inliers,
                        query_box, result_box, geometry.mirrored)


def boxes(geometry: Geometry, points: Keypoints, query: VerifiedQuery,
          candidate: Candidate) -> tuple[list[int] | None, list[int] | None]:
    """Where the result's picture lands in the query and the query's in the result, each clipped
    to the picture it lies in and scaled to that picture's pixels."""
    h = geometry.transform
    qw, qh = query.points.width, query.points.height
    in_query = _project(h, points.width, points.height)
    if geometry.mirrored:  # the homography maps into the mirrored query
        in_query[:, 0] = qw - in_query[:, 0]
    try:
        inverse = np.linalg.inv(h)
    except np.linalg.LinAlgError:
        return None, None
    in_result = _project(inverse, qw, qh)  # the mirrored query's outline is the query's outline
    return (_box(in_query, qw, qh, query.width / qw, query.height / qh),
            _box(in_result, points.width, points.height, candidate.width / points.width, candidate.height / points.height))


def _project(h: np.ndarray, width: int, height: int) -> np.ndarray:
    corners = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]], dtype=np.float64)
    mapped = corners @ h.T
    with np.errstate(divide="ignore", invalid="ignore"):
        return mapped[:, :2] / mapped[:, 2:3]


def _box(corners: np.ndarray, width: int, height: int, sx: float, sy: float) -> list[int] | None:
    if not np.all(np.isfinite(corners)):
        return None
    x0, y0 = np.clip(corners.min(axis=0), 0, [width, height])
    x1, y1 = np.clip(corners.max(axis=0), 0, [width, height])
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return [int(round(x0 * sx)), int(round(y0 * sy)), int(round(x1 * sx)), int(round(y1 * sy))]
