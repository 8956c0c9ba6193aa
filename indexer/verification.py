"""Geometric verification of a candidate pair: is one picture an edited copy of the other?

Each picture gives ORB keypoints (oriented FAST corners with binary descriptors of the 31 x 31
pixel patch around them, OpenCV's, ~10 ms a picture) on its grey levels at VERIFY_SIDE pixels.
Patches of the two pictures are matched mutual-nearest-neighbour (each is the other's closest by
Hamming distance), and RANSAC fits one homography to the matched positions. A copy (re-encoded, cropped,
rotated, padded, screenshotted, overlaid) keeps its pixels, so most matches agree with one
homography to within a few pixels; two shots of one scene differ by parallax and motion, so
fewer do. The answer is the inlier count and the share of matches that are inliers. Before
matching, a cheap first test (``close_patches``: how many patches have a near twin on the first
64 descriptor bits, a tenth of matching's cost) leaves unrelated pairs unmatched.

The ViT's own patch tokens were measured for this first (docs/BENCHMARKS.md, "Duplicate verdicts"):
at 8 x 8 stored cells, and even re-embedded at 16 x 16, a crop of a photo matched fewer of its
patches consistently than a second shot of the scene did, so they cannot separate the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, ImageOps

VERIFY_SIDE = 320  # long side, in pixels, the keypoints are found at
KEYPOINTS = 400
MIN_MATCHES = 8
MIN_ALIGNING_INLIERS = 12  # inliers a homography needs to count as evidence (fewer agree by chance)
# a homography whose inliers lie on two frames (``frame_matches``) but for fewer than
# MIN_ALIGNING_INLIERS is evidence only where what the frames hold correlates at least this well
# once aligned (``window_correlation``): then the "frames" were a photo's own flat parts, taken for borders
FRAMES_CORRELATION = 0.42
# a picture with fewer keypoints (a thumbnail, a blurred or flat picture) cannot show a copy's
# MIN_ALIGNING_INLIERS: no inliers between it and a picture rich in them say nothing (``too_few_keypoints``)
MIN_TELLING_KEYPOINTS = 32
# The cheap first test (``close_patches``): patches whose first 64 descriptor bits (ORB's most telling
# tests, one machine word) differ in at most PREFIX_BITS, and how many a pair needs to be matched at all
PREFIX_BITS = 8
ORB_MIN_SIDE = 32  # pixels: ORB finds no keypoint within 31 of an edge, and its pyramid fails below this
MIN_CLOSE_PATCHES = 4
RESIDUAL_PIXELS = 2.0  # a match is an inlier when the homography puts it this close (at VERIFY_SIDE)
RANSAC_TRIALS = 500
LOWE_RATIO = 0.9
POPCOUNT_PAIRS = 400 * 400  # patch pairs up to which numpy popcounts match (stored features: always), above it OpenCV
BLOCK = 16  # pixels (at VERIFY_SIDE) of the photometric check's blocks
AGREEMENT_ZNCC = 0.7
AGREEMENT_SIGMA = 1.0  # pixels of Gaussian blur applied to both before correlating
FLAT_ENERGY = 25.0  # grey-level variance below which a block is flat: no evidence either way
# Overlays (``overlaid_blocks``): a block whose texture energy in one picture is this many times the
# other's holds something the other lacks, and when at least OVERLAY_SIDE of such blocks are richer
# in the same picture, that is a caption, sticker or button laid over it: no evidence either way
OVERLAY_ENERGY_RATIO = 4.0
OVERLAY_SIDE = 0.7
# Sharpness matched (``matched_sharpness``): where one picture's blocks hold less than half the other's
# fine detail (the median block's Laplacian energy), the sharper is blurred further by the one of
# these sigmas (pixels) that brings it nearest, so a blurred copy is not blamed for its blur
SHARPNESS_RATIO = 0.5
SHARPNESS_SIGMAS = (0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
AGREED = 0.95  # a pair whose blocks agree this well as they are is not compared again sharpness-matched


@dataclass
class Keypoints:
    """A picture's ORB keypoints (x, y in pixels of the scaled picture, ``width`` x ``height``)
    and their 256-bit descriptors."""

    points: np.ndarray  # (n, 2) float32
    descriptors: np.ndarray  # (n, 32) uint8
    width: int = 0
    height: int = 0
    grey_array: np.ndarray | None = None  # the grey levels they were found on, for the photometric check
    mirror: Keypoints | None = None  # those of the mirror image, once found (mirrored_keypoints)
    prefix: np.ndarray | None = None  # the descriptors' first 64 bits as uint64, once found (descriptor_prefixes)
    grey_jpeg: bytes | None = None  # stored keypoints: the grey levels as a JPEG, decoded when first needed
    # a framed picture's content window (x0, y0, x1, y1, shares of the sides): the photo inside a
    # screenshot or borders; what lies outside it is the frame (``frame_matches``)
    window: tuple[float, float, float, float] | None = None

    @property
    def grey(self) -> np.ndarray | None:
        """The grey levels (decoded from ``grey_jpeg`` on first use: most pairs a scan looks at
        never need them, and a cache of decoded ones would hold four times the bytes)."""
        if self.grey_array is None and self.grey_jpeg is not None:
            decoded = cv2.imdecode(np.frombuffer(self.grey_jpeg, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
            self.grey_jpeg = None
            if decoded is not None and decoded.shape == (self.height, self.width):
                self.grey_array = decoded
        return self.grey_array


@dataclass(frozen=True)
class Geometry:
    """What geometric verification found: cross-checked matches, homography inliers among them,
    ``inlier_share`` = inliers / matches, ``coverage`` = inliers / the smaller keypoint count, and
    ``agreement``: the share of textured blocks of the overlap whose grey levels still correlate
    (ZNCC >= 0.7) once the homography aligns the pictures, blocks under an overlay left out (a copy
    keeps its pixels; another shot moves, occludes and re-lights them). Fewer than
    MIN_ALIGNING_INLIERS inliers is no homography: share, coverage and agreement are then 0."""

    matches: int
    inliers: int
    inlier_share: float
    coverage: float
    mirrored: bool = False
    agreement: float = 0.0
    # the homography from the first picture's keypoint pixels to the second's (mirrored first when
    # ``mirrored``); None without enough inliers to align the two
    transform: np.ndarray | None = field(default=None, compare=False, repr=False)
    telling: bool = True  # False: a picture has too few keypoints for any (``too_few_keypoints``)

    def to_json(self) -> dict:
        return {"matches": self.matches, "inliers": self.inliers, "inlier_share": round(self.inlier_share, 4),
                "coverage": round(self.coverage, 4), "agreement": round(self.agreement, 4), "mirrored": self.mirrored,
                **({} if self.telling else {"telling": False})}


NO_GEOMETRY = Geometry(0, 0, 0.0, 0.0)
UNTOLD = Geometry(0, 0, 0.0, 0.0, telling=False)  # the geometry of a pair ``too_few_keypoints`` to verify


def grey_levels(picture: Image.Image, side: int = VERIFY_SIDE) -> np.ndarray:
    """The picture in grey, long side at most ``side``, as uint8."""
    grey = picture.convert("L")
    scale = side / max(grey.size)
    if scale < 1.0:
        grey = grey.resize((max(1, round(grey.width * scale)), max(1, round(grey.height * scale))),
                           Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.uint8)


def keypoints(picture: Image.Image, mirrored: bool = False, side: int = VERIFY_SIDE) -> Keypoints:
    """ORB keypoints of the picture (of its mirror image with ``mirrored``) in pixels of the picture
    scaled to ``side``; none on a flat or tiny picture."""
    grey = grey_levels(ImageOps.mirror(picture) if mirrored else picture, side)
    return orb_keypoints(grey, cv2.ORB_create(nfeatures=KEYPOINTS))


def orb_keypoints(grey: np.ndarray, orb) -> Keypoints:
    """What the OpenCV ORB detector ``orb`` finds on the grey levels (none on a flat picture, nor
    on one narrower than ORB's 31-pixel patch border, where its image pyramid would fail)."""
    found, descriptors = orb.detectAndCompute(grey, None) if min(grey.shape[:2]) >= ORB_MIN_SIDE else ((), None)
    if descriptors is None or not found:
        return Keypoints(np.zeros((0, 2), dtype=np.float32), np.zeros((0, 32), dtype=np.uint8), grey.shape[1],
                         grey.shape[0], grey)
    points = cv2.KeyPoint_convert(found).reshape(-1, 2).astype(np.float32, copy=False)
    return Keypoints(points, descriptors, grey.shape[1], grey.shape[0], grey)


_faiss_on_one_thread = None  # the faiss module, in a process that asked for it (``match_by_faiss_here``)


def match_by_faiss_here() -> None:
    """In a process that verifies on one thread of its own (a geometry pool's worker), match by
    FAISS's binary k-NN search from now on, when FAISS is installed: half the time of numpy's
    popcounts there, the same pairs. Not where Python threads share the cores (a search's
    verification): there FAISS, holding its thread, is the slower."""
    global _faiss_on_one_thread
    try:
        import faiss  # lazy: an optional package (the [cpu] or [gpu] extra)
    except ImportError:
        return
    faiss.omp_set_num_threads(1)  # this process's only other threads would contend for its core
    _faiss_on_one_thread = faiss


def match(a: Keypoints, b: Keypoints) -> np.ndarray:
    """(n, 2) indices of mutual nearest neighbours (Hamming distance) between a's and b's patches
    whose nearest is clearly nearer than the second (Lowe's ratio test)."""
    if len(a.points) < 2 or len(b.points) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    if _faiss_on_one_thread is not None:
        return _match_by_faiss(_faiss_on_one_thread, a.descriptors, b.descriptors)
    if len(a.points) * len(b.points) <= POPCOUNT_PAIRS:
        return _match_by_popcount(a.descriptors, b.descriptors)
    return _match_by_matcher(a.descriptors, b.descriptors)


def _match_by_popcount(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``match`` from the whole distance matrix, four 64-bit popcounts a pair (numpy): at 400 x 400
    patches half the time of OpenCV's matcher, whose per-match Python objects cost more than the
    distances."""
    a_words, b_words = np.ascontiguousarray(a).view("<u8"), np.ascontiguousarray(b).view("<u8")
    distance = np.bitwise_count(a_words[:, None, 0] ^ b_words[None, :, 0]).astype(np.uint16)
    for word in range(1, a_words.shape[1]):
        distance += np.bitwise_count(a_words[:, None, word] ^ b_words[None, :, word])
    rows = np.arange(len(a))
    nearest = np.argmin(distance, axis=1)
    first = distance[rows, nearest]
    distance[rows, nearest] = np.iinfo(np.uint16).max  # the second nearest: the row's least but its nearest
    second = distance.min(axis=1)  # (a masked min: a quarter faster than a partition of the rows)
    distance[rows, nearest] = first
    return _mutual_pairs(nearest, first, second, np.argmin(distance, axis=0))


def _match_by_faiss(faiss, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``match`` by FAISS's exhaustive binary search: a's two nearest in b, b's nearest in a."""
    a, b = np.ascontiguousarray(a, dtype=np.uint8), np.ascontiguousarray(b, dtype=np.uint8)
    in_b, in_a = faiss.IndexBinaryFlat(8 * b.shape[1]), faiss.IndexBinaryFlat(8 * a.shape[1])
    in_b.add(b)
    in_a.add(a)
    distance, nearest = in_b.search(a, 2)
    _, back = in_a.search(b, 1)
    return _mutual_pairs(nearest[:, 0], distance[:, 0], distance[:, 1], back[:, 0])


def _mutual_pairs(nearest: np.ndarray, first: np.ndarray, second: np.ndarray, back: np.ndarray) -> np.ndarray:
    """The (a, b) pairs of ``match`` from each a patch's nearest b patch, its distance and the
    second nearest's, and each b patch's nearest a patch (``back``): mutual, and passing the ratio test."""
    rows = np.arange(len(nearest))
    keep = (back[nearest] == rows) & (first < LOWE_RATIO * second)
    return np.stack([rows[keep], nearest[keep]], axis=1).astype(np.int64)


def _match_by_matcher(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``match`` by OpenCV's brute-force matcher: a's two nearest in b, then the way back checked for
    the b patches matched only (the same pairs as matching all of b back, for fewer of them)."""
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    forward = [(m[0].queryIdx, m[0].trainIdx) for m in matcher.knnMatch(a, b, k=2)
               if len(m) == 2 and m[0].distance < LOWE_RATIO * m[1].distance]
    if not forward:
        return np.zeros((0, 2), dtype=np.int64)
    matched = np.unique([j for _, j in forward])
    back = {int(matched[m[0].queryIdx]): m[0].trainIdx for m in matcher.knnMatch(b[matched], a, k=1) if m}
    return np.array([(i, j) for i, j in forward if back.get(j) == i], dtype=np.int64).reshape(-1, 2)


def homography(a: Keypoints, b: Keypoints, pairs: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """The homography from a to b most matches agree with and the inlier mask (OpenCV's USAC with
    MAGSAC++ scoring: the inliers plain RANSAC finds, at ~0.4 ms a pair instead of ~10 ms when
    most matches are chance ones and RANSAC runs all its trials; docs/BENCHMARKS.md)."""
    if len(pairs) < MIN_MATCHES:
        return None, np.zeros(len(pairs), dtype=bool)
    h, mask = cv2.findHomography(a.points[pairs[:, 0]], b.points[pairs[:, 1]], cv2.USAC_MAGSAC, RESIDUAL_PIXELS,
                                 maxIters=RANSAC_TRIALS, confidence=0.995)
    if h is None or mask is None:
        return None, np.zeros(len(pairs), dtype=bool)
    return h, mask.reshape(-1).astype(bool)


def verify(a: Keypoints, b: Keypoints, mirrored: bool = False) -> Geometry:
    """Mutual-nearest-neighbour matches of a's and b's patches and the homography most agree with."""
    fewest = min(len(a.points), len(b.points))
    if fewest < MIN_MATCHES:
        return Geometry(0, 0, 0.0, 0.0, mirrored)
    pairs = match(a, b)
    if len(pairs) < MIN_MATCHES:
        return Geometry(len(pairs), 0, 0.0, 0.0, mirrored)
    h, inliers = homography(a, b, pairs)
    count = int(inliers.sum())
    if count < MIN_ALIGNING_INLIERS:  # a handful of chance matches agree with some homography: no evidence
        return Geometry(len(pairs), count, 0.0, 0.0, mirrored)
    aligned = h is not None and a.grey is not None and b.grey is not None
    held = count - int(frame_matches(a, b, pairs[inliers]).sum())  # inliers not on both frames
    if aligned and held < MIN_ALIGNING_INLIERS and window_correlation(a, b.grey, h) < FRAMES_CORRELATION:
        # the frames align (one app's bars and buttons), what they hold does not: no evidence
        return Geometry(len(pairs), held, 0.0, 0.0, mirrored)
    agreement = aligned_agreement(a.grey, b.grey, h) if aligned else 0.0
    return Geometry(len(pairs), count, count / len(pairs), count / fewest, mirrored, agreement, h if aligned else None)


def aligned_agreement(a: np.ndarray, b: np.ndarray, h: np.ndarray) -> float:
    """Share of a's textured BLOCK x BLOCK blocks inside the overlap whose grey levels correlate
    (ZNCC >= AGREEMENT_ZNCC) with b's warped onto them by ``h`` (a → b), overlays left out
    (``overlaid_blocks``). Where b is the smaller picture, a is first taken down to b's
    resolution, and where under AGREED of the blocks agree, the sharper of the two is blurred to
    the other's sharpness (``matched_sharpness``) and they are compared again: a resized or
    blurred copy is not blamed for its blur."""
    scale = _local_scale(h, a.shape[1] / 2, a.shape[0] / 2)
    ref = a.astype(np.float32)
    if 0.1 < scale < 0.95:
        small = cv2.resize(ref, (max(8, int(a.shape[1] * scale)), max(8, int(a.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
        ref = cv2.resize(small, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_LINEAR)
    # compared below the finest detail, which blur, noise and re-encoding take from a copy too
    ref = cv2.GaussianBlur(ref, (0, 0), AGREEMENT_SIGMA)
    # the overlap's edge continued outward, not black: a false edge would count as fine detail
    back = _warped_back(b, h, (a.shape[1], a.shape[0]), cv2.BORDER_REPLICATE)
    if back is None:
        return 0.0
    warped, inside = back
    rows, cols = a.shape[0] // BLOCK, a.shape[1] // BLOCK
    if rows == 0 or cols == 0:
        return 0.0

    def blocks(x: np.ndarray) -> np.ndarray:
        return x[:rows * BLOCK, :cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK).transpose(0, 2, 1, 3).reshape(rows * cols, -1)

    valid = blocks(inside).min(axis=1) >= 1
    ref, warped = ref[:rows * BLOCK, :cols * BLOCK], warped[:rows * BLOCK, :cols * BLOCK]
    agreeing = _agreeing_share(blocks(ref), blocks(warped), valid)
    if agreeing >= AGREED:
        return agreeing
    matched = matched_sharpness(ref, warped, valid)
    return agreeing if matched is None else _agreeing_share(blocks(matched[0]), blocks(matched[1]), valid)


def window_correlation(a: Keypoints, b: np.ndarray, h: np.ndarray) -> float:
    """The correlation (ZNCC) of a's grey levels inside its window with b's (grey levels) warped
    onto them by ``h``, both blurred as ``aligned_agreement`` blurs them: near 1 where the two
    hold one picture there, near 0 where they hold different ones; 0 where they do not overlap."""
    width, height = a.width, a.height
    x0, y0, x1, y1 = a.window
    box = (slice(round(y0 * height), round(y1 * height)), slice(round(x0 * width), round(x1 * width)))
    back = _warped_back(b, h, (width, height), cv2.BORDER_CONSTANT)
    if back is None:
        return 0.0
    warped, inside = back[0][box], back[1][box].astype(bool)
    ref = cv2.GaussianBlur(a.grey.astype(np.float32), (0, 0), AGREEMENT_SIGMA)[box]
    if inside.sum() < BLOCK * BLOCK:
        return 0.0
    ra, rb = ref[inside] - ref[inside].mean(), warped[inside] - warped[inside].mean()
    energy = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / energy) if energy > 0 else 0.0


def _warped_back(b: np.ndarray, h: np.ndarray, size: tuple[int, int],
                 border: int) -> tuple[np.ndarray, np.ndarray] | None:
    """b's grey levels blurred by AGREEMENT_SIGMA and warped back onto the first picture's pixels
    (``size``) by the inverse of ``h``, and the mask of where b lands there; None for a singular h."""
    try:
        inverse = np.linalg.inv(h)
    except np.linalg.LinAlgError:
        return None
    blurred = cv2.GaussianBlur(b.astype(np.float32), (0, 0), AGREEMENT_SIGMA)
    warped = cv2.warpPerspective(blurred, inverse, size, flags=cv2.INTER_LINEAR, borderMode=border)
    inside = cv2.warpPerspective(np.ones_like(b, dtype=np.uint8), inverse, size, flags=cv2.INTER_NEAREST)
    return warped, inside


def _agreeing_share(ra: np.ndarray, rb: np.ndarray, valid: np.ndarray) -> float:
    """The share of the ``valid`` blocks (rows of pixels), textured in both and not overlaid,
    whose grey levels correlate (ZNCC >= AGREEMENT_ZNCC)."""
    ra = ra - ra.mean(axis=1, keepdims=True)
    rb = rb - rb.mean(axis=1, keepdims=True)
    energy_a, energy_b = (ra * ra).sum(axis=1), (rb * rb).sum(axis=1)
    textured = valid & (energy_a > FLAT_ENERGY * BLOCK * BLOCK) & (energy_b > FLAT_ENERGY * BLOCK * BLOCK)
    textured &= ~overlaid_blocks(energy_a, energy_b, textured)
    if not textured.any():
        return 0.0
    zncc = (ra * rb).sum(axis=1)[textured] / np.sqrt(energy_a[textured] * energy_b[textured])
    return float((zncc >= AGREEMENT_ZNCC).mean())


def matched_sharpness(a: np.ndarray, b: np.ndarray, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """a and b (float32, BLOCK-aligned), the sharper blurred further, where the median of their
    blocks' fine-detail ratio (Laplacian energy, over the blocks ``inside`` both) says one holds
    under SHARPNESS_RATIO of the other's: by the SHARPNESS_SIGMAS sigma whose blur brings it
    nearest (chosen at half the resolution, a quarter of the cost). None where they are alike."""
    detail_a, detail_b = _block_detail(a), _block_detail(b)
    both = inside & (detail_a > 1e-3) & (detail_b > 1e-3)
    if both.sum() < 8:
        return None
    gap = float(np.median(np.log(detail_b[both] / detail_a[both])))  # < 0: b is the blurrier
    if abs(gap) <= -np.log(SHARPNESS_RATIO):
        return None
    sharper, blurrier = (a, b) if gap < 0 else (b, a)
    half = (a.shape[1] // 2, a.shape[0] // 2)
    small = cv2.resize(sharper, half, interpolation=cv2.INTER_AREA)
    target = _block_detail(cv2.resize(blurrier, half, interpolation=cv2.INTER_AREA), BLOCK // 2)[both]
    chosen, left = 0.0, float(np.median(np.log(np.maximum(_block_detail(small, BLOCK // 2)[both], 1e-6) / target)))
    for sigma in SHARPNESS_SIGMAS:
        detail = _block_detail(cv2.GaussianBlur(small, (0, 0), sigma / 2), BLOCK // 2)[both]
        remaining = float(np.median(np.log(np.maximum(detail, 1e-6) / target)))
        if remaining <= 0:  # as blurry as the other now, or blurrier: this sigma or the one before
            if -remaining < left:
                chosen = sigma
            break
        chosen, left = sigma, remaining
    if not chosen:
        return None
    blurred = cv2.GaussianBlur(sharper, (0, 0), chosen)
    return (blurred, b) if gap < 0 else (a, blurred)


def _block_detail(x: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Each ``block`` x ``block`` block's mean squared Laplacian (row by row, as ``aligned_agreement``'s blocks)."""
    laplacian = cv2.Laplacian(x, cv2.CV_32F)
    return cv2.resize(laplacian * laplacian, (x.shape[1] // block, x.shape[0] // block), interpolation=cv2.INTER_AREA).reshape(-1)


def overlaid_blocks(energy_a: np.ndarray, energy_b: np.ndarray, textured: np.ndarray) -> np.ndarray:
    """The textured blocks that hold an overlay: far richer in texture (OVERLAY_ENERGY_RATIO) in the
    picture where nearly all such blocks are (OVERLAY_SIDE): a copy's caption or sticker lies on one
    picture, while two different photos, or two shots of a scene, are each richer in places."""
    richer_a = textured & (energy_a > OVERLAY_ENERGY_RATIO * energy_b)
    richer_b = textured & (energy_b > OVERLAY_ENERGY_RATIO * energy_a)
    in_a, in_b = int(richer_a.sum()), int(richer_b.sum())
    if max(in_a, in_b) < OVERLAY_SIDE * (in_a + in_b) or in_a + in_b == 0:
        return np.zeros_like(textured)
    return richer_a if in_a > in_b else richer_b


def _local_scale(h: np.ndarray, x: float, y: float) -> float:
    """How many of b's pixels one of a's pixels spans around (x, y) under ``h``."""
    def mapped(px: float, py: float) -> np.ndarray:
        p = h @ np.array([px, py, 1.0])
        return p[:2] / p[2] if abs(p[2]) > 1e-12 else np.array([np.inf, np.inf])

    centre = mapped(x, y)
    jacobian = np.stack([mapped(x + 1, y) - centre, mapped(x, y + 1) - centre], axis=1)
    det = abs(np.linalg.det(jacobian)) if np.all(np.isfinite(jacobian)) else 0.0
    return float(np.sqrt(det))


def frame_matches(a: Keypoints, b: Keypoints, pairs: np.ndarray) -> np.ndarray:
    """Which matched (a, b) pairs join two frames: both keypoints outside their framed pictures'
    content windows. Two screenshots of one app share its bars, buttons and text at the same
    places whatever photos they show; such matches say the frames are alike, not the pictures."""
    if a.window is None or b.window is None or not len(pairs):
        return np.zeros(len(pairs), dtype=bool)
    return _outside(a, a.points[pairs[:, 0]]) & _outside(b, b.points[pairs[:, 1]])


def _outside(points: Keypoints, xy: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = points.window
    x, y = xy[:, 0] / points.width, xy[:, 1] / points.height
    return (x < x0) | (x > x1) | (y < y0) | (y > y1)


def mirrored_keypoints(points: Keypoints) -> Keypoints:
    """Keypoints of the mirror image, found anew on the mirrored grey levels (a mirrored copy
    keeps no ORB descriptor of the original); found once per ``points``, kept with them."""
    if points.mirror is None:
        points.mirror = orb_keypoints(np.ascontiguousarray(points.grey[:, ::-1]), cv2.ORB_create(nfeatures=KEYPOINTS))
        if points.window is not None:
            x0, y0, x1, y1 = points.window
            points.mirror.window = (1.0 - x1, y0, 1.0 - x0, y1)
    return points.mirror


def descriptor_prefixes(points: Keypoints) -> np.ndarray:
    """The first 64 bits of each descriptor, as uint64 (found once per ``points``)."""
    if points.prefix is None:
        points.prefix = np.ascontiguousarray(points.descriptors[:, :8]).view("<u8").reshape(-1).astype(np.uint64)
    return points.prefix


def close_patches(a: np.ndarray, b: np.ndarray) -> int:
    """How many of a's patches (and at least as many of b's) have a patch in the other picture
    whose descriptor prefixes (``descriptor_prefixes``) differ in at most PREFIX_BITS: a tenth of
    the cost of matching, and a copy's patches pass it in numbers unrelated pictures' do not."""
    if len(a) == 0 or len(b) == 0:
        return 0
    close = np.bitwise_count(a[:, None] ^ b[None, :]) <= PREFIX_BITS
    return min(int(close.any(axis=1).sum()), int(close.any(axis=0).sum()))


def too_few_keypoints(a: Keypoints, b: Keypoints) -> bool:
    """Whether one of a and b (a thumbnail, a blurred picture) has too few keypoints for their
    geometry to be evidence either way while the other has enough (UNTOLD): whether the two are
    copies then rests on the other evidence. Two pictures both that poor keep their geometry's
    answer (none): tiny pictures look alike to the descriptor by their colours alone."""
    fewer, more = sorted((len(a.points), len(b.points)))
    return fewer < MIN_TELLING_KEYPOINTS <= more


def verify_keypoints(a: Keypoints, b: Keypoints, try_mirror: bool = True) -> Geometry:
    """The better of b as it is and b mirrored (with ``try_mirror``). Each orientation is matched
    only if it passes the cheap first test (``close_patches`` >= MIN_CLOSE_PATCHES: measured to
    keep every pair a homography finds MIN_ALIGNING_INLIERS for, docs/BENCHMARKS.md); else it
    gives no geometric evidence. A pair ``too_few_keypoints`` to verify is UNTOLD."""
    if too_few_keypoints(a, b):
        return UNTOLD
    prefixes = descriptor_prefixes(a)
    direct = verify(a, b) if close_patches(prefixes, descriptor_prefixes(b)) >= MIN_CLOSE_PATCHES else NO_GEOMETRY
    if not try_mirror or direct.inlier_share >= 0.8 or b.grey is None:
        return direct
    mirror = mirrored_keypoints(b)
    if close_patches(prefixes, descriptor_prefixes(mirror)) < MIN_CLOSE_PATCHES:
        return direct
    flipped = verify(a, mirror, mirrored=True)
    return flipped if flipped.inliers > direct.inliers else direct


def inlier_matches(a: Keypoints, b: Keypoints, geometry: Geometry) -> np.ndarray:
    """(n, 4) rows x_a, y_a, x_b, y_b (each picture's scaled pixels; b as it is, even when the match
    was found mirrored) of the matches ``geometry``'s homography agrees with: what a viewer draws to
    show where two pictures match. Empty without a homography."""
    if geometry.transform is None:
        return np.zeros((0, 4), dtype=np.float32)
    target = mirrored_keypoints(b) if geometry.mirrored else b
    pairs = match(a, target)
    if not len(pairs):
        return np.zeros((0, 4), dtype=np.float32)
    from_a = a.points[pairs[:, 0]].astype(np.float64)
    to_b = target.points[pairs[:, 1]].astype(np.float64)
    projected = cv2.perspectiveTransform(from_a.reshape(-1, 1, 2), geometry.transform).reshape(-1, 2)
    agree = np.linalg.norm(projected - to_b, axis=1) <= RESIDUAL_PIXELS
    to_b = to_b[agree]
    if geometry.mirrored:
        to_b[:, 0] = b.width - to_b[:, 0]
    return np.hstack([from_a[agree], to_b]).astype(np.float32)


def verify_pictures(a: Keypoints, b_picture: Image.Image, b: Keypoints | None = None) -> Geometry:
    """``verify_keypoints`` of a and a picture (its keypoints ``b`` when already found)."""
    return verify_keypoints(a, b if b is not None else keypoints(b_picture))
