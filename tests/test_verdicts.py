"""Duplicate verdicts on real photos: perceptual hashes, geometric verification, the calibrated
tiers of a scan and of a check, and the k-NN graph a scan is built on."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont, ImageOps

from dinoseek.settings import load_settings
from indexer.duplicates import find_duplicates
from indexer.duplicates.check import check_picture
from indexer.duplicates.knn_graph import knn_graph
from indexer.ingest.phash import hash_similarity, perceptual_hash
from indexer.jobs import index_paths
from indexer.library import Library
from indexer.verdicts import FEATURES_CHEAP, Calibration, PairEvidence, _logistic, calibration_for, features, load_calibrations
from indexer.verification import NO_GEOMETRY, UNTOLD, Geometry, aligned_agreement, grey_levels, keypoints, verify_pictures
from tests.support.photos import skimage_photo


def _stereo() -> tuple[Image.Image, Image.Image]:
    """Two shots of one scene: scikit-image's stereo pair (left and right cameras)."""
    import skimage.data

    left, right, _ = skimage.data.stereo_motorcycle()
    return Image.fromarray(left), Image.fromarray(right)


def _jpeg(picture: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    picture.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _captioned(picture: Image.Image) -> Image.Image:
    out = picture.copy()
    ImageDraw.Draw(out).text((10, out.height - 40), "when the weekend arrives", fill=(255, 255, 255))
    return out


def _another_shot(picture: Image.Image, seed: int) -> Image.Image:
    """The same scene a moment later from a hand-held camera: a new framing, the subject moved
    (a smooth displacement of about 4% of the picture), another exposure."""
    rng = np.random.default_rng(seed)
    w, h = picture.size
    framed = picture.crop((int(w * rng.uniform(0, 0.12)), int(h * rng.uniform(0, 0.12)),
                           int(w * rng.uniform(0.88, 1.0)), int(h * rng.uniform(0.88, 1.0))))
    arr = np.asarray(framed, dtype=np.float32)
    rows, cols = arr.shape[:2]
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    amplitude = 0.04 * max(rows, cols)
    dy = amplitude * np.sin(2 * np.pi * (xx / cols * rng.uniform(0.7, 1.5) + rng.uniform(0, 1)))
    dx = amplitude * np.sin(2 * np.pi * (yy / rows * rng.uniform(0.7, 1.5) + rng.uniform(0, 1)))
    moved = arr[np.clip(yy + dy, 0, rows - 1).astype(int), np.clip(xx + dx, 0, cols - 1).astype(int)]
    return Image.fromarray(np.clip(moved * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8))


def _crop(picture: Image.Image, share: float) -> Image.Image:
    w, h = picture.size
    cw, ch = int(w * share), int(h * share)
    return picture.crop(((w - cw) // 3, (h - ch) // 2, (w - cw) // 3 + cw, (h - ch) // 2 + ch))


def test_perceptual_hash_is_imagehash_phash(photos) -> None:
    imagehash = pytest.importorskip("imagehash")
    for picture in list(photos.values()) + list(_stereo()):
        bits = "".join("1" if b else "0" for b in imagehash.phash(picture).hash.flatten())
        value = int(bits, 2)
        assert perceptual_hash(picture) == (value - (1 << 64) if value >= 1 << 63 else value)
    astronaut = photos["astronaut"]
    assert hash_similarity(perceptual_hash(astronaut), perceptual_hash(_jpeg(astronaut, 30))) >= 0.9
    assert hash_similarity(perceptual_hash(astronaut), perceptual_hash(photos["coffee"])) < 0.75


def test_geometric_verification_tells_copies_from_other_shots(photos) -> None:
    astronaut = photos["astronaut"]
    original = keypoints(astronaut)
    copies = {"re-encoded": _jpeg(astronaut, 25), "cropped": _crop(astronaut, 0.7),
              "mirrored": ImageOps.mirror(astronaut), "captioned": _captioned(astronaut),
              "rotated": astronaut.rotate(15, expand=True)}
    for name, copy in copies.items():
        g = verify_pictures(original, copy)
        assert g.inlier_share >= 0.75 and g.inliers >= 40, (name, g)
    assert verify_pictures(original, copies["mirrored"]).mirrored
    left, right = _stereo()
    shots = verify_pictures(keypoints(left), right)
    unrelated = verify_pictures(original, photos["coffee"])
    assert shots.inlier_share < 0.75, shots  # parallax: no one homography explains two viewpoints
    assert unrelated.inliers < 15 and unrelated.inlier_share < 0.5, unrelated
    assert verify_pictures(keypoints(Image.new("RGB", (200, 200), (90, 90, 90))), astronaut).inliers == 0


def _meme(picture: Image.Image) -> Image.Image:
    """Meme captions: big white words outlined in black across the top and the bottom."""
    out = picture.copy()
    draw = ImageDraw.Draw(out)
    size = int(out.height * 0.13)
    font = ImageFont.load_default(size=size)
    for y, line in ((int(out.height * 0.03), "ME WHEN THE"), (out.height - int(size * 1.3), "MONDAY HITS AGAIN")):
        x = max(0, (out.width - int(draw.textlength(line, font=font))) // 2)
        draw.text((x, y), line, fill=(255, 255, 255), font=font, stroke_width=size // 12, stroke_fill=(0, 0, 0))
    return out


def test_a_caption_laid_over_a_copy_is_no_evidence_against_it(photos) -> None:
    """Captions over a fifth of a photo are far richer in texture in the copy alone: those blocks
    say nothing about whether the rest is the photo (0.69-0.75 of the blocks agreed when they
    counted against it). Two shots of one scene are each richer in places: none is left out."""
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        photo = photos[name]
        copy = verify_pictures(keypoints(photo), _meme(photo))
        assert copy.inlier_share >= 0.95 and copy.agreement >= 0.8, (name, copy)
    left, right = _stereo()
    assert verify_pictures(keypoints(left), right).agreement < 0.55
    camera = skimage_photo("camera")
    for seed in (1, 2):
        assert verify_pictures(keypoints(camera), _another_shot(camera, seed)).agreement < 0.45, seed


def test_a_blurred_copy_is_not_blamed_for_its_blur() -> None:
    """Fine detail that a copy's blur took away says nothing against it: the sharper picture is
    blurred as far before comparing (0.74-0.86 of the blocks agreed at this blur when it counted),
    whichever of the two is the copy; a re-shot is as sharp as its scene and gains nothing."""
    for name in ("hubble_deep_field", "camera", "immunohistochemistry"):
        photo = grey_levels(skimage_photo(name))
        blurred = cv2.GaussianBlur(photo, (0, 0), 3.5)
        assert aligned_agreement(photo, blurred, np.eye(3)) >= 0.98, name
        assert aligned_agreement(blurred, photo, np.eye(3)) >= 0.98, name
    camera = skimage_photo("camera")
    assert verify_pictures(keypoints(camera), _another_shot(camera, 1)).agreement < 0.45


@pytest.fixture(scope="module")
def shipped_library(tmp_path_factory):
    """The shipped model (whose verdicts are calibrated) over originals, edited copies, identical
    bytes and a second shot of a scene."""
    root = tmp_path_factory.mktemp("verdicts")
    lib = root / "lib"
    lib.mkdir()
    names = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins")
    pictures = {n: skimage_photo(n) for n in names}
    left, right = _stereo()
    pictures["motorcycle_left"], pictures["motorcycle_right"] = left, right
    pictures["astronaut_meme"] = _captioned(_jpeg(pictures["astronaut"], 35))
    pictures["chelsea_crop"] = _crop(pictures["chelsea"], 0.75)
    pictures["coffee_small"] = pictures["coffee"].resize((300, 200))
    pictures["camera_shot1"] = _another_shot(pictures["camera"], 1)
    pictures["camera_shot2"] = _another_shot(pictures["camera"], 2)
    for name, picture in pictures.items():
        picture.save(lib / f"{name}.png")
    (lib / "rocket_again.png").write_bytes((lib / "rocket.png").read_bytes())
    settings = replace(load_settings({}), home=root / "home", database_url=f"sqlite:///{root}/c.db",
                       vector_backend="faiss", model=None)
    library = Library(settings)
    report = index_paths(library, "lib", [lib])
    assert report.indexed == len(pictures) + 1 and report.failed == 0
    yield library, lib, pictures
    library.close()


def test_scan_tiers_copies_near_and_other_shots_similar(shipped_library) -> None:
    library, lib, _ = shipped_library
    assert calibration_for(library.embedder.vit, 0.5).source == "fitted"
    groups = find_duplicates(library, "lib")
    by_kind = {kind: [{Path(p).stem for p in g.paths} for g in groups if g.kind == kind] for kind in ("exact", "near", "similar")}
    assert by_kind["exact"] == [{"rocket", "rocket_again"}]
    for copy in ({"astronaut", "astronaut_meme"}, {"chelsea", "chelsea_crop"}, {"coffee", "coffee_small"}):
        assert any(copy <= g for g in by_kind["near"]), (copy, by_kind)
    # a burst of shots of one scene: one similar group, and never a copy of each other
    burst = {"camera", "camera_shot1", "camera_shot2"}
    assert any(burst <= g for g in by_kind["similar"]), by_kind
    assert not any(len(g & burst) > 1 for g in by_kind["near"]), by_kind
    for g in by_kind["near"] + by_kind["similar"]:  # no group mixes two different photos
        assert len({name.split("_")[0] for name in g}) == 1, g
    # the stereo pair (two cameras, a static scene, a small baseline) is the hard case: its pixels
    # agree almost as a copy's do, so it is at least grouped, and less surely a copy than real copies
    stereo = {"motorcycle_left", "motorcycle_right"}
    assert any(stereo <= g for g in by_kind["near"] + by_kind["similar"]), by_kind
    weakest_copy = min(g.score for g in groups if g.kind == "near" and not {Path(p).stem for p in g.paths} & stereo)
    stereo_score = [g.evidence["copy_probability"] for g in groups if stereo <= {Path(p).stem for p in g.paths}][0]
    assert stereo_score < weakest_copy - 0.2, (stereo_score, weakest_copy)
    for g in groups:
        if g.kind == "near":
            assert g.score >= 0.5 and g.evidence["copy_probability"] == pytest.approx(g.score, abs=1e-6)
            assert set(g.evidence) >= {"descriptor", "normalised", "hash", "geometry", "pair"}
    saved = find_duplicates(library, "lib", save=False)
    assert [(g.kind, g.image_ids) for g in saved] == [(g.kind, g.image_ids) for g in groups]  # deterministic


def test_check_answers_each_match_with_its_tier(shipped_library) -> None:
    library, lib, pictures = shipped_library
    query = _crop(_captioned(pictures["chelsea"]), 0.8)
    vector = library.embedder.embed([query]).vectors[0]
    _, matches = check_picture(library, "lib", query, vector, perceptual_hash(query))
    assert matches and Path(matches[0].hit.path).stem in ("chelsea", "chelsea_crop")
    assert matches[0].evidence.verdict == "near" and matches[0].evidence.copy_probability >= 0.5
    shot = _another_shot(pictures["camera"], 3)
    _, matches = check_picture(library, "lib", shot, library.embedder.embed([shot]).vectors[0], perceptual_hash(shot))
    tiers = {Path(m.hit.path).stem: m.evidence.verdict for m in matches}
    assert tiers.get("camera") == "similar" and "near" not in tiers.values(), tiers
    camera = next(m for m in matches if Path(m.hit.path).stem == "camera")
    assert camera.evidence.hash is not None and camera.evidence.copy_probability < 0.5
    data = (lib / "rocket.png").read_bytes()
    from indexer.ingest.reading import sha256_bytes

    rocket = pictures["rocket"]
    _, matches = check_picture(library, "lib", rocket, library.embedder.embed([rocket]).vectors[0],
                               perceptual_hash(rocket), sha256=sha256_bytes(data))
    assert {Path(m.hit.path).stem for m in matches if m.evidence.verdict == "exact"} == {"rocket", "rocket_again"}


def test_knn_graph_inverted_file_finds_the_exact_graphs_edges() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(600, 64)).astype(np.float32)
    copies = base[:150] + 0.15 * rng.normal(size=(150, 64)).astype(np.float32)
    vectors = np.vstack([base, copies])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(1000, 1000 + len(vectors))
    table = dict(zip(ids.tolist(), vectors))

    def fetch(wanted):
        found = np.array([i for i in np.asarray(wanted).tolist() if i in table], dtype=np.int64)
        return found, np.stack([table[i] for i in found.tolist()]) if len(found) else np.empty((0, 64), np.float32)

    exact = knn_graph(fetch, ids.tolist(), 64, k=12, floor=0.8)
    approx = knn_graph(fetch, ids.tolist(), 64, k=12, floor=0.8, exact_limit=100)
    assert not exact.approximate and approx.approximate
    pairs = set(zip(exact.a.tolist(), exact.b.tolist()))
    assert {(1000 + i, 1600 + i) for i in range(150)} <= pairs  # every copy found by the exact graph
    found = set(zip(approx.a.tolist(), approx.b.tolist()))
    assert len(found & pairs) >= 0.95 * len(pairs) and found <= pairs
    scores = dict(zip(zip(approx.a.tolist(), approx.b.tolist()), approx.score.tolist()))
    exact_scores = dict(zip(zip(exact.a.tolist(), exact.b.tolist()), exact.score.tolist()))
    assert all(abs(scores[p] - exact_scores[p]) < 1e-5 for p in found)  # rescored from the stored vectors
    assert all(a < b for a, b in found) and len(found) == len(approx.a)


@pytest.mark.parametrize("fit", ["shipped", "fallback", "no related model"])
def test_judging_many_pairs_at_once_gives_each_pair_its_own_verdict(fit) -> None:
    """A scan judges its edges in arrays (``judge_all``, ``wants_geometry_of``,
    ``cheap_probabilities``); each pair gets what judging it alone gives: the same copy probability,
    verdict and need for geometry, with and without geometry, hash or normalisation."""
    shipped = Calibration.from_json(next(iter(load_calibrations().values())))
    cal = {"shipped": shipped, "fallback": Calibration.fallback(0.9),
           "no related model": replace(shipped, related=None, related_full=None)}[fit]
    rng = np.random.default_rng(7)
    evidence = []
    for n in range(3000):
        geometry = None if n % 3 == 0 else UNTOLD if n % 3 == 1 and n % 4 == 0 else Geometry(
            int(rng.integers(0, 200)), int(rng.integers(0, 100)), float(rng.random()), float(rng.random()),
            agreement=float(rng.random()))
        evidence.append(PairEvidence(float(rng.uniform(0.2, 1.0)), None if n % 5 == 0 else float(rng.uniform(-0.3, 0.6)),
                                     None if n % 7 == 0 else float(rng.random()), geometry))
    alone = [cal.judge(replace(e)) for e in evidence]
    together = [replace(e) for e in evidence]
    cal.judge_all(together)
    assert [e.verdict for e in together] == [e.verdict for e in alone]
    assert {e.verdict for e in alone} >= ({"near", None} if fit == "fallback" else {"near", "similar", None})
    assert np.allclose([e.copy_probability for e in together], [e.copy_probability for e in alone], rtol=0, atol=1e-12)
    low, high = cal.verify_band
    in_band = [cal.full is not None and (low <= cal.cheap_probability(e) <= high or (
        cal.related is not None and low <= _scalar_related(cal, e) <= high)) for e in evidence]
    assert (0 < sum(in_band) < len(in_band)) if cal.full is not None else not any(in_band)
    assert cal.wants_geometry_of(evidence).tolist() == in_band
    assert [cal.wants_geometry(e) for e in evidence[:50]] == in_band[:50]
    assert np.allclose(cal.cheap_probabilities(evidence), [cal.cheap_probability(e) for e in evidence], rtol=0, atol=1e-12)


def _scalar_related(cal, evidence) -> float:
    """The cheap related probability of one pair, by the scalar logistic."""
    return _logistic(cal.related, features(evidence, FEATURES_CHEAP))


def test_a_pair_too_poor_in_keypoints_is_a_copy_on_the_cheap_evidence_or_nothing() -> None:
    """Geometry refused for too few keypoints (UNTOLD) is no evidence where the perceptual hashes
    say one picture: the copy question goes to the cheap model, as without geometry, and
    resemblance alone never makes such a pair ``similar``."""
    cal = Calibration.from_json(next(iter(load_calibrations().values())))
    thumbnail = PairEvidence(0.98, 0.58, 0.9)  # a thumbnail of the photo: its descriptor says copy
    assert cal.judge(replace(thumbnail, geometry=NO_GEOMETRY)).verdict is None  # "no inliers" read as evidence
    untold = cal.judge(replace(thumbnail, geometry=UNTOLD))
    assert untold.verdict == "near" and untold.copy_probability == cal.judge(replace(thumbnail)).copy_probability
    alike = PairEvidence(0.6, 0.1, 0.85)  # looks like the other picture, not a copy of it
    assert cal.judge(replace(alike)).verdict == "similar"
    assert cal.judge(replace(alike, geometry=UNTOLD)).verdict is None
    # where the hashes do not say one picture, finding no inliers stands: the cheap model alone
    # calls some unrelated thumbnails copies
    unrelated = PairEvidence(-0.145, -0.163, 0.5)
    assert cal.judge(replace(unrelated)).verdict == "near"
    assert cal.judge(replace(unrelated, geometry=UNTOLD)).verdict is None
    assert UNTOLD.to_json()["telling"] is False and "telling" not in NO_GEOMETRY.to_json()


def test_one_picture_by_its_hash_and_its_alignment_is_a_copy() -> None:
    """Blur can leave a copy so few matching keypoints that its inlier share is a stranger's, while
    its perceptual hash is its photo's and verification aligns the two: such a pair is a copy, in a
    scan's arrays as alone. Hashes merely alike, or blocks that do not agree, leave it to the model."""
    cal = Calibration.from_json(next(iter(load_calibrations().values())))
    blurred = PairEvidence(0.85, 0.4, 61 / 64, Geometry(40, 20, 0.5, 0.3, agreement=0.9))
    alike = replace(blurred, hash=58 / 64)
    misaligned = replace(blurred, geometry=Geometry(40, 20, 0.5, 0.3, agreement=0.6))
    few = replace(blurred, geometry=Geometry(40, 8, 0.0, 0.0))  # no homography: nothing aligned
    assert cal.judge(replace(alike)).verdict != "near"  # the model alone: the share of a stranger
    together = [replace(e) for e in (blurred, alike, misaligned, few)]
    cal.judge_all(together)
    for alone, judged in zip((cal.judge(replace(e)) for e in (blurred, alike, misaligned, few)), together):
        assert judged.verdict == alone.verdict and judged.copy_probability == pytest.approx(alone.copy_probability, abs=1e-12)
    assert [e.verdict == "near" for e in together] == [True, False, False, False]
    assert together[0].copy_probability >= 0.95
    expert = Calibration.fallback(0.9)  # an expert's cosine threshold decides alone
    assert expert.judge(replace(blurred)).verdict != "near"
