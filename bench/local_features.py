"""ORB, AKAZE and SIFT as the local features stored at indexing: bytes per picture, extraction time,
verification time per pair, and what they verify (edited copies) or wrongly verify (unrelated photos).

Each photo and each of its edited copies (bench/edits.py, the strong families and two mild ones) is
reduced to grey levels at the side the product stores features at (indexer/verification.py
VERIFY_SIDE), and each detector keeps at most as many keypoints as the product stores (KEYPOINTS).
A pair is verified as the product does it: mutual nearest neighbours with Lowe's ratio, a USAC
MAGSAC++ homography at 2 px, at least MIN_ALIGNING_INLIERS inliers. Unrelated pairs are each photo
against the next photo's copy.

    .venv/bin/python bench/local_features.py --photos 120
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.edits import FAMILIES, STRONG  # noqa: E402
from indexer.verification import (  # noqa: E402
    KEYPOINTS,
    LOWE_RATIO,
    MIN_ALIGNING_INLIERS,
    RANSAC_TRIALS,
    RESIDUAL_PIXELS,
    VERIFY_SIDE,
    grey_levels,
)

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos-1k"
FAMILIES_MEASURED = ("reencode", "colour", *STRONG)


def _strongest(points, descriptors, n: int):
    if descriptors is None or len(points) <= n:
        return points, descriptors
    order = np.argsort([-p.response for p in points])[:n]
    return [points[i] for i in order], descriptors[order]


def detectors() -> dict[str, tuple[Callable, int, int]]:
    """Name → (make the detector, OpenCV norm, bytes a stored descriptor takes); AKAZE only where the
    installed OpenCV has it (OpenCV 5's main modules dropped it)."""
    found = {
        "ORB": (lambda: cv2.ORB_create(nfeatures=KEYPOINTS), cv2.NORM_HAMMING, 32),
        "SIFT": (lambda: cv2.SIFT_create(nfeatures=KEYPOINTS), cv2.NORM_L2, 128),  # stored as uint8
    }
    if hasattr(cv2, "AKAZE_create"):
        found["AKAZE"] = (lambda: cv2.AKAZE_create(threshold=0.0005), cv2.NORM_HAMMING, 61)
    else:
        print(f"AKAZE: not in this OpenCV ({cv2.__version__}); not measured")
    return found


def features(detector, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    points, descriptors = detector.detectAndCompute(grey, None)
    points, descriptors = _strongest(points, descriptors, KEYPOINTS)
    return np.array([p.pt for p in points], dtype=np.float32).reshape(-1, 2), descriptors


def verified(a, b, norm: int) -> int:
    """Inliers of the pair as the product counts them (0 below what counts as evidence)."""
    (pa, da), (pb, db) = a, b
    if da is None or db is None or len(pa) < 2 or len(pb) < 2:
        return 0
    matcher = cv2.BFMatcher(norm)
    back = {m[0].queryIdx: m[0].trainIdx for m in matcher.knnMatch(db, da, k=1) if m}
    pairs = [(m[0].queryIdx, m[0].trainIdx) for m in matcher.knnMatch(da, db, k=2)
             if len(m) == 2 and m[0].distance < LOWE_RATIO * m[1].distance and back.get(m[0].trainIdx) == m[0].queryIdx]
    if len(pairs) < 8:
        return 0
    idx = np.array(pairs)
    h, mask = cv2.findHomography(pa[idx[:, 0]], pb[idx[:, 1]], cv2.USAC_MAGSAC, RESIDUAL_PIXELS,
                                 maxIters=RANSAC_TRIALS, confidence=0.995)
    inliers = 0 if h is None or mask is None else int(mask.sum())
    return inliers if inliers >= MIN_ALIGNING_INLIERS else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    files = sorted(PHOTOS.glob("*.jpg"))[:args.photos]
    if not files:
        raise SystemExit(f"no photos under {PHOTOS}")
    rng = random.Random(args.seed)
    sources = [Image.open(f).convert("RGB") for f in files]
    copies = {family: [FAMILIES[family](img, rng) for img in sources] for family in FAMILIES_MEASURED}
    grey = {"source": [grey_levels(img, VERIFY_SIDE) for img in sources]}
    grey.update({family: [grey_levels(img, VERIFY_SIDE) for img in imgs] for family, imgs in copies.items()})
    print(f"{len(files)} photos of {PHOTOS.name}, {len(FAMILIES_MEASURED)} edit families, grey levels at "
          f"{VERIFY_SIDE} px, at most {KEYPOINTS} keypoints, ≥ {MIN_ALIGNING_INLIERS} inliers verify")
    for name, (make, norm, descriptor_bytes) in detectors().items():
        detector = make()
        started = time.perf_counter()
        found = {kind: [features(detector, g) for g in greys] for kind, greys in grey.items()}
        extract_ms = 1000 * (time.perf_counter() - started) / sum(len(g) for g in grey.values())
        counts = [len(p) for p, _ in found["source"]]
        stored = statistics.mean(c * (descriptor_bytes + 8) for c in counts)  # + x, y as float32
        timings, recall = [], {}
        for family in FAMILIES_MEASURED:
            hits = 0
            for src, copy in zip(found["source"], found[family]):
                t = time.perf_counter()
                hits += verified(src, copy, norm) > 0
                timings.append(time.perf_counter() - t)
            recall[family] = hits / len(files)
        false = 0
        for i, src in enumerate(found["source"]):
            false += verified(src, found["reencode"][(i + 1) % len(files)], norm) > 0
        strong = statistics.mean(recall[f] for f in STRONG)
        print(f"{name:6s} keypoints {statistics.mean(counts):5.0f}  stored {stored / 1000:5.1f} kB/picture (descriptors + "
              f"points)  extract {extract_ms:5.1f} ms/picture  verify {1000 * statistics.median(timings):5.2f} ms/pair "
              f"(p90 {1000 * np.quantile(timings, 0.9):.2f})  verified: mild {recall['reencode']:.2f}/{recall['colour']:.2f} "
              f"strong {strong:.2f}  unrelated {false}/{len(files)}")
        print("        " + "  ".join(f"{f} {recall[f]:.2f}" for f in STRONG))


if __name__ == "__main__":
    main()
