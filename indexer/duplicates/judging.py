"""Judging one pair of pictures: the verdict model in force, and geometry where it could change the verdict.

A scan (scan.py) and a check (check.py) judge pairs the same way: cheap evidence first (descriptor,
normalised descriptor, pHash), keypoint verification only where a cheap probability falls in the
calibration's band. Keypoints of indexed pictures are their stored local features, through a bounded cache.
"""

from __future__ import annotations

from collections import OrderedDict

from indexer.catalog.database import Catalog
from indexer.catalog.models import Image, ImageFeatures
from indexer.errors import InvalidRequest
from indexer.ingest import local_features
from indexer.ingest.reading import DEFAULT_MAX_FILE_MB
from indexer.library import Library
from indexer.readback import Roots, collection_roots, fixed_roots, read_back
from indexer.verdicts import Calibration, PairEvidence, calibration_for, model_near_threshold
from indexer.verification import VERIFY_SIDE, Keypoints, verify_keypoints
from model.preprocess import ImageDecodeError

KEYPOINT_CACHE = 8192  # pictures whose keypoints a scan keeps (~25 kB each; ~100 kB once its grey levels are decoded)


def near_threshold(library: Library) -> float:
    """The configured model's measured near-duplicate cosine threshold, else DEFAULT_NEAR_THRESHOLD."""
    return model_near_threshold(library.embedder.vit)


def check_threshold(threshold: float | None) -> float | None:
    """An expert's descriptor threshold when it is a cosine, else InvalidRequest (None stays None)."""
    if threshold is not None and not -1.0 <= float(threshold) <= 1.0:
        raise InvalidRequest(f"threshold must be a cosine similarity in [-1, 1], got {threshold}")
    return None if threshold is None else float(threshold)


def calibration(library: Library, threshold: float | None = None) -> Calibration:
    """The verdict model: the backbone's fitted one, or with ``threshold`` the descriptor cosine
    alone decides ``near`` (an expert override; evidence is still reported)."""
    if threshold is not None:
        return Calibration.fallback(threshold)
    return calibration_for(library.embedder.vit, near_threshold(library))


def picture_cache(library: Library) -> PictureCache:
    """A keypoint cache over the library's catalog."""
    return PictureCache(library.catalog, library.settings.max_image_pixels,
                        fixed_roots(library.settings.allowed_roots, library.settings.home))


class PictureCache:
    """Keypoints of indexed pictures (a bounded LRU): their stored local features, or for an image
    indexed before features were stored (until ``dinoseek index`` fills them in), its file."""

    def __init__(self, catalog: Catalog, max_pixels: int, roots: Roots, size: int = KEYPOINT_CACHE) -> None:
        self.catalog = catalog
        self.max_pixels = max_pixels
        self.roots = roots  # readback.fixed_roots; a file is read back under them or its collection's
        self.size = size
        self.entries: OrderedDict[int, Keypoints | None] = OrderedDict()
        self.files_read = 0  # images whose keypoints had to come from their file

    def get(self, image_id: int, path: str) -> Keypoints | None:
        """The image's keypoints (with their grey levels), or None when there are none to be had."""
        if image_id in self.entries:
            self.entries.move_to_end(image_id)
            return self.entries[image_id]
        with self.catalog.session() as s:
            stored = s.get(ImageFeatures, image_id)
            data = stored.data if stored is not None else None
            row = s.get(Image, image_id) if data is None else None
            roots = self.roots + collection_roots(s, row.collection_id) if row is not None else None
        if data is not None:
            entry = local_features.decode(data)
        else:  # a picture without stored features: its file, if it is still indexed and readable
            entry = self._from_file(path, roots) if roots is not None else None
        self.entries[image_id] = entry
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return entry

    def _from_file(self, path: str, roots: Roots) -> Keypoints | None:
        self.files_read += 1
        try:
            picture = read_back(path, roots, self.max_pixels, DEFAULT_MAX_FILE_MB, target_long_side=VERIFY_SIDE).image
        except (ImageDecodeError, OSError):
            return None  # a file gone or broken since indexing: judged on the other evidence
        return local_features.extract(picture)


def judge_pair(cal: Calibration, evidence: PairEvidence, geometry, always: bool = False) -> PairEvidence:
    """Verify geometrically when the cheap evidence leaves the verdict open (or ``always``: a
    candidate the descriptor cannot judge, found through a content window), then judge."""
    if always or cal.wants_geometry(evidence):
        left, right = geometry()
        if left is not None and right is not None:
            evidence.geometry = verify_keypoints(left, right)
    return cal.judge(evidence)
