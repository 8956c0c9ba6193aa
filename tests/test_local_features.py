"""Local features stored at indexing (issue 16, step 1): computed once from the decode indexing
does, kept in the catalog, and what duplicate scans and checks verify with, so a scan reads no
image file. Collections indexed before are filled in by the next ``index``, without re-embedding."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw
from sqlalchemy import delete, select, update

from dinoseek.settings import load_settings
from indexer import verification
from indexer.catalog.models import Image as Row
from indexer.catalog.models import ImageFeatures
from indexer.duplicates import find_duplicates, geometry
from indexer.duplicates.check import check_upload
from indexer.duplicates.scan import pair_judge
from indexer.framing import content_windows
from indexer.ingest import local_features
from indexer.ingest.local_features import FeaturesError
from indexer.ingest.reading import read_image
from indexer.jobs import index_paths, job_json
from indexer.jobs.chunks import ChunkRun
from indexer.library import Library
from indexer.query.verified import query_keypoints
from indexer.uploads import Upload
from indexer.verdicts import calibration_for
from indexer.verification import keypoints, verify_keypoints, verify_pictures
from tests.support.photos import skimage_photo

NAMES = ("astronaut", "coffee", "chelsea", "rocket", "camera")


def _copies(picture: Image.Image) -> dict[str, Image.Image]:
    w, h = picture.size
    captioned = picture.copy()
    ImageDraw.Draw(captioned).text((10, h - 30), "look at this", fill=(255, 255, 255))
    return {"crop": picture.crop((w // 10, h // 12, w - w // 8, h - h // 10)), "captioned": captioned,
            "small": picture.resize((w // 2, h // 2))}


def test_stored_features_round_trip_and_verify_as_the_picture_does(photos) -> None:
    picture = photos["chelsea"]
    found = local_features.extract(picture)
    data = local_features.encode(found)
    back = local_features.decode(data)
    assert len(found.points) >= 100 and len(data) < 40_000
    np.testing.assert_array_equal(back.descriptors, found.descriptors)
    assert np.abs(back.points - found.points).max() <= 0.5 / local_features.SUBPIXELS
    assert back.grey.shape == found.grey.shape == (back.height, back.width)
    for name, copy in _copies(picture).items():
        query = keypoints(copy)
        from_file, stored = verify_pictures(query, picture), verify_keypoints(query, back)
        assert stored.inliers >= 0.9 * from_file.inliers and stored.inliers >= 20, name
        assert abs(stored.agreement - from_file.agreement) < 0.1, name
    unrelated = verify_keypoints(keypoints(photos["coffee"]), back)
    assert unrelated.inliers < 12
    mirrored = verify_keypoints(keypoints(picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)), back)
    assert mirrored.mirrored and mirrored.inliers >= 20  # found again on the mirrored grey levels
    for broken in (b"", b"DSLF1", data[:-len(data) // 2], data[:-100], b"JPEG" + data):
        with pytest.raises(FeaturesError):
            local_features.decode(broken)


def _framed(picture: Image.Image) -> Image.Image:
    """The picture small inside a large frame with a title and lines of text: a padded or
    screenshotted copy, the photo about 6% of its area."""
    canvas = Image.new("RGB", (2400, 1800), (40, 90, 160))
    canvas.paste(picture, (900, 700))
    draw = ImageDraw.Draw(canvas)
    for row in range(6):
        draw.text((80, 80 + 90 * row), f"comment {row}: what a picture, seen it before?", fill=(250, 250, 250),
                  font_size=48)
    return canvas


def test_a_framed_picture_keeps_keypoints_of_the_photo_inside(photos) -> None:
    """Found on the whole picture, the keypoints of a photo framed small are few, at a scale its
    source's do not share, and the stored features of the two do not verify as copies; a framed
    picture also gets keypoints from its content window, at the photo's own scale, and they do.
    A plain photo's keypoints are the whole picture's, as before."""
    astronaut = photos["astronaut"]
    framed = _framed(astronaut)
    assert local_features.flat_outline(verification.grey_levels(framed)) == 1.0
    for name in ("astronaut", "coffee", "chelsea"):  # photos: not looked at for a frame
        assert local_features.flat_outline(verification.grey_levels(photos[name])) < local_features.FRAMED_OUTLINE
    window = local_features.framed_window(framed)
    assert window is not None and np.allclose(window, (900 / 2400, 700 / 1800, 1412 / 2400, 1212 / 1800), atol=0.03)
    stored = local_features.extract(framed)
    assert len(stored.points) <= verification.KEYPOINTS
    x, y = stored.points[:, 0] / stored.width, stored.points[:, 1] / stored.height
    inside = (x >= window[0]) & (x <= window[2]) & (y >= window[1]) & (y <= window[3])
    assert inside.sum() >= 100
    source = local_features.extract(astronaut)
    plain = verification.orb_keypoints(stored.grey, cv2.ORB_create(nfeatures=verification.KEYPOINTS))
    assert verify_keypoints(plain, source).inliers < 12
    found = verify_keypoints(stored, source)
    assert found.inliers >= 30 and found.agreement >= 0.8
    assert verify_keypoints(stored, local_features.extract(photos["coffee"])).inliers < 12
    for name in ("coffee", "chelsea"):  # no frame: the whole picture's keypoints alone
        assert local_features.framed_window(photos[name]) is None
        whole = verification.orb_keypoints(verification.grey_levels(photos[name]),
                                           cv2.ORB_create(nfeatures=verification.KEYPOINTS))
        np.testing.assert_array_equal(local_features.extract(photos[name]).descriptors, whole.descriptors)


WORDS = "photo shared likes comments follow trip summer view all reply news today".split()


def _in_an_app(picture: Image.Image) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """The picture across a phone app's screen, the same bar, avatar, buttons and lines of text
    around it whatever it shows, and where it lies (shares of the sides)."""
    canvas = Image.new("RGB", (720, 1500), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, 720, 56), fill=(34, 34, 34))
    draw.text((20, 12), "9:41", fill=(250, 250, 250), font_size=28)
    draw.ellipse((16, 76, 80, 140), fill=(200, 80, 60))
    draw.text((100, 92), "traveller shared a photo", fill=(40, 40, 40), font_size=28)
    photo = picture.resize((680, round(680 * picture.height / picture.width)))
    canvas.paste(photo, (20, 160))
    y = 180 + photo.height
    for i in range(3):
        draw.ellipse((20 + 68 * i, y, 68 + 68 * i, y + 48), outline=(40, 40, 40), width=4)
    for row in range((1460 - y - 70) // 36):
        draw.text((20, y + 70 + 36 * row), " ".join(WORDS[(5 * row + k) % len(WORDS)] for k in range(6)),
                  fill=(40, 40, 40), font_size=26)
    return canvas, (20 / 720, 160 / 1500, 700 / 720, (160 + photo.height) / 1500)


def test_screenshots_of_one_app_match_by_what_they_show_not_by_the_app(photos) -> None:
    """A photo across a phone app with lines of text below it: its content window is the photo,
    not the photo and the text, and it is stored with the features. Screenshots of two different
    photos in that app share the bar, buttons and text, where their keypoints align (72-79
    inliers without the windows); with them, matches between the two frames are no evidence and
    the pair has none. A photo and its screenshot still verify, and so do a photo and a copy both
    taken for framed, where what the "frames" hold agrees."""
    shots = {name: _in_an_app(photos[name]) for name in ("coffee", "chelsea", "rocket")}
    stored = {}
    for name, (shot, truth) in shots.items():
        window = local_features.framed_window(shot)
        assert window is not None and np.allclose(window, truth, atol=0.03), (name, window, truth)
        stored[name] = local_features.decode(local_features.encode(local_features.extract(shot)))
        assert np.allclose(stored[name].window, window, atol=0.01)
        assert np.allclose(query_keypoints(shot, content_windows(shot)).window, window)  # a search's query: the same
    for a, b in (("coffee", "chelsea"), ("chelsea", "rocket"), ("rocket", "coffee")):
        assert verify_keypoints(stored[a], stored[b]).inliers < 12, (a, b)
        as_frames = verify_keypoints(replace(stored[a], window=None), replace(stored[b], window=None))
        assert as_frames.inliers >= 50, (a, b)  # what the windows take away
    for name in shots:
        found = verify_keypoints(local_features.extract(photos[name]), stored[name])
        assert found.inliers >= 50 and found.agreement >= 0.8, name
    # a photo and its copy, each given a window that is no frame: the matches outside it are the photo's
    photo, copy = local_features.extract(photos["chelsea"]), keypoints(_copies(photos["chelsea"])["captioned"])
    photo.window = copy.window = (0.3, 0.3, 0.5, 0.5)
    assert verify_keypoints(photo, copy).inliers >= 50


def test_checks_and_scans_find_framed_copies_and_never_join_an_apps_screenshots(tmp_path) -> None:
    """A check searches the query's content windows too and verifies what they find, on the
    query's keypoints as indexing would store them, window and all. The astronaut small in a
    frame (its descriptor's cosine to the photo is below zero) is a near copy of the astronaut; a
    screenshot of the coffee is one of the coffee and of its screenshot; a screenshot of the
    rocket, in the app whose screenshots of other photos are indexed, is a copy of nothing,
    where the app's frame alone made one of it before. A scan of the library (its stored windows,
    verified in the geometry processes) puts each photo with its screenshot and no two photos
    together."""
    folder = tmp_path / "lib"
    folder.mkdir()
    for name in ("coffee", "chelsea", "astronaut"):
        skimage_photo(name).save(folder / f"{name}.jpg", quality=90)
        _in_an_app(skimage_photo(name))[0].save(folder / f"{name}_app.jpg", quality=90)
    settings = replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                       vector_backend="faiss", model=None)
    library = Library(settings)
    queries = {"framed astronaut": _framed(skimage_photo("astronaut")),
               "rocket in the app": _in_an_app(skimage_photo("rocket"))[0],
               "coffee in the app": _in_an_app(skimage_photo("coffee"))[0]}
    try:
        assert index_paths(library, "lib", [folder]).indexed == 6
        found = {}
        for name, query in queries.items():
            buffer = io.BytesIO()
            query.save(buffer, "JPEG", quality=80)  # not the indexed bytes: a copy, not the same file
            _, matches = check_upload(library, "lib", Upload(f"{name}.jpg", buffer.getvalue()))
            found[name] = {Path(m.hit.path).name: m.evidence.verdict for m in matches}
        groups = sorted(sorted(Path(p).stem for p in g.paths) for g in find_duplicates(library, "lib", save=False))
    finally:
        library.close()
    assert groups == [[name, f"{name}_app"] for name in ("astronaut", "chelsea", "coffee")], groups
    assert found["framed astronaut"].get("astronaut.jpg") == "near", found
    assert found["rocket in the app"] == {}, found
    assert {found["coffee in the app"].get(name) for name in ("coffee_app.jpg", "coffee.jpg")} == {"near"}, found


def test_features_stored_before_windows_are_read_without_one(photos) -> None:
    """Bytes of the first format (no window) still decode, with the same keypoints."""
    found = local_features.extract(photos["coffee"])
    data = local_features.encode(found)
    header = len(local_features.MAGIC) + local_features.HEADER.size
    first = local_features.FIRST_MAGIC + data[len(local_features.MAGIC):header] + data[header + local_features.WINDOW.size:]
    back = local_features.decode(first)
    assert back.window is None
    np.testing.assert_array_equal(back.descriptors, local_features.decode(data).descriptors)


def test_every_way_of_matching_gives_the_mutual_nearest_patches_that_pass_the_ratio_test(photos, monkeypatch) -> None:
    """numpy popcounts (up to POPCOUNT_PAIRS patch pairs), OpenCV's matcher (above) and FAISS's
    binary search (a geometry worker's) give the same pairs, and those are exactly the mutual
    nearest neighbours whose nearest is clearly nearer than the second, checked here on the
    unpacked bits, for copies, an unrelated pair, dense patches and patches found twice."""
    faiss = pytest.importorskip("faiss")
    chelsea = local_features.extract(photos["chelsea"])
    dense = verification.orb_keypoints(np.asarray(photos["chelsea"].convert("L")), cv2.ORB_create(nfeatures=1500))
    cases = [(keypoints(copy), chelsea) for copy in _copies(photos["chelsea"]).values()]
    twice = verification.Keypoints(np.vstack([chelsea.points, chelsea.points[:40]]),
                                   np.vstack([chelsea.descriptors, chelsea.descriptors[:40]]), chelsea.width, chelsea.height)
    cases += [(keypoints(photos["coffee"]), chelsea), (chelsea, dense), (twice, keypoints(_copies(photos["chelsea"])["crop"]))]
    for a, b in cases:
        bits_a, bits_b = np.unpackbits(a.descriptors, axis=1), np.unpackbits(b.descriptors, axis=1)
        distance = (bits_a[:, None, :] != bits_b[None, :, :]).sum(axis=2)
        nearest, ordered = distance.argmin(axis=1), np.sort(distance, axis=1)
        rows = np.arange(len(distance))
        expected = {(i, int(nearest[i])) for i in rows
                    if distance[:, nearest[i]].argmin() == i and ordered[i, 0] < verification.LOWE_RATIO * ordered[i, 1]}
        by_popcount = verification._match_by_popcount(a.descriptors, b.descriptors)
        by_matcher = verification._match_by_matcher(a.descriptors, b.descriptors)
        by_faiss = verification._match_by_faiss(faiss, a.descriptors, b.descriptors)
        assert np.array_equal(by_faiss, by_popcount)
        assert {tuple(p) for p in by_popcount.tolist()} == {tuple(p) for p in by_matcher.tolist()} == expected
        assert {tuple(p) for p in verification.match(a, b).tolist()} == expected
        monkeypatch.setattr(verification, "_faiss_on_one_thread", faiss)  # as in a geometry worker
        assert {tuple(p) for p in verification.match(a, b).tolist()} == expected
        monkeypatch.setattr(verification, "_faiss_on_one_thread", None)
    assert len(expected) > 50 and len(dense.points) * len(chelsea.points) > verification.POPCOUNT_PAIRS


def test_the_cheap_first_test_lets_copies_through_and_keeps_unrelated_pairs_from_matching(photos, monkeypatch) -> None:
    """A pair whose descriptor prefixes are not close is not matched, a copy's (mirrored too)
    always is; stored keypoints decode their grey levels only when a check needs them."""
    stored = {name: local_features.decode(local_features.encode(local_features.extract(skimage_photo(name))))
              for name in NAMES}
    assert all(points.grey_array is None for points in stored.values())  # nothing decoded yet
    assert stored["astronaut"].grey.shape == (stored["astronaut"].height, stored["astronaut"].width)
    matched = []
    real_verify = verification.verify
    monkeypatch.setattr(verification, "verify", lambda a, b, mirrored=False: matched.append(mirrored)
                        or real_verify(a, b, mirrored))
    unrelated = [(a, b) for a in NAMES for b in NAMES if a < b]
    for a, b in unrelated:
        assert verify_keypoints(stored[a], stored[b]).inliers < verification.MIN_ALIGNING_INLIERS, (a, b)
    # without the test, each pair would be matched as it is and mirrored: 20 matchings; with it,
    # only camera and rocket (5 close patches) are
    assert len(matched) <= 2, matched
    picture = photos["chelsea"]
    for name, copy in {**_copies(picture), "mirrored": picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)}.items():
        query = keypoints(copy)
        found = verify_keypoints(query, stored["chelsea"])
        assert found.inliers >= 20 and found.mirrored == (name == "mirrored"), name
        close = verification.close_patches(verification.descriptor_prefixes(query), verification.descriptor_prefixes(
            verification.mirrored_keypoints(stored["chelsea"]) if name == "mirrored" else stored["chelsea"]))
        assert close >= 3 * verification.MIN_CLOSE_PATCHES, name


@pytest.fixture
def library(tmp_path):
    """The shipped model (its verdicts are calibrated: pairs reach geometry) over originals and
    edited copies."""
    folder = tmp_path / "lib"
    folder.mkdir()
    for name in NAMES:
        picture = skimage_photo(name)
        picture.save(folder / f"{name}.jpg", quality=90)
        for edit, copy in _copies(picture).items():
            copy.save(folder / f"{name}_{edit}.jpg", quality=80)
    settings = replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                       vector_backend="faiss", model=None)
    library = Library(settings)
    report = index_paths(library, "lib", [folder])
    assert report.indexed == 4 * len(NAMES) and report.failed == 0
    yield library, folder
    library.close()


def _features(library: Library) -> dict[str, bytes]:
    with library.catalog.session() as s:
        return {Path(path).name: data for path, data in s.execute(
            select(Row.path, ImageFeatures.data).join(ImageFeatures, ImageFeatures.image_id == Row.id))}


def _groups(library: Library) -> list[tuple]:
    return [(g.kind, g.image_ids, g.evidence and g.evidence["geometry"]) for g in find_duplicates(library, "lib")]


def test_indexing_stores_features_and_a_scan_reads_no_file(library) -> None:
    library, folder = library
    stored = _features(library)
    assert len(stored) == 4 * len(NAMES)
    assert all(len(data) < 40_000 for data in stored.values())
    for name, data in stored.items():  # keypoints found between forward passes, as ``extract`` finds them
        picture = read_image(folder / name, target_long_side=verification.VERIFY_SIDE).image
        assert data == local_features.encode(local_features.extract(picture)), name
    before = _groups(library)
    near = [ids for kind, ids, _ in before if kind == "near"]
    assert len(near) == len(NAMES) and all(len(ids) == 4 for ids in near)
    assert any(geometry for _, _, geometry in before)  # the verdicts needed the keypoints
    moved = folder.with_name("moved-away")
    folder.rename(moved)  # not one indexed file is where the catalog says
    try:
        assert _groups(library) == before
    finally:
        moved.rename(folder)


def test_a_collection_indexed_before_features_is_filled_in_without_re_embedding(library) -> None:
    library, folder = library
    stored = _features(library)
    with library.catalog.session() as s:
        ids = sorted(s.scalars(select(Row.id)))
        s.execute(delete(ImageFeatures))  # as a collection indexed by an earlier dinoseek
    with library.catalog.session() as s:
        stores = library.stores_for(s, library.get_collection(s, "lib"))
    _, vectors = stores.global_.fetch(np.array(ids))
    report = index_paths(library, "lib", [folder])
    assert (report.indexed, report.skipped, report.failed) == (0, len(ids), 0)  # nothing re-embedded
    assert report.features_refreshed == len(ids)  # and the report says what the run did
    assert job_json(library, report.job_id)["features_refreshed"] == len(ids)
    assert _features(library) == stored  # the same bytes: computed as indexing computes them
    _, after = stores.global_.fetch(np.array(ids))
    np.testing.assert_array_equal(after, vectors)
    again = index_paths(library, "lib", [folder])
    assert (again.indexed, again.skipped, again.features_refreshed) == (0, len(ids), 0)  # the next run has nothing to do


def test_features_of_an_older_extractor_are_found_again_without_re_embedding(library) -> None:
    """Features stored by an earlier extractor (before framed pictures kept keypoints of their
    window, say) are found again by the next index, as missing ones are; current ones are kept."""
    library, folder = library
    stored = _features(library)
    with library.catalog.session() as s:
        ids = {Path(path).name: i for i, path in s.execute(select(Row.id, Row.path))}
        assert set(s.scalars(select(ImageFeatures.extractor))) == {local_features.EXTRACTOR}
        old, kept = ids["coffee.jpg"], ids["chelsea.jpg"]
        wrong = stored["rocket.jpg"]  # bytes that are not these pictures' features: seen if kept
        s.execute(update(ImageFeatures).where(ImageFeatures.image_id == old).values(data=wrong, extractor=1))
        s.execute(update(ImageFeatures).where(ImageFeatures.image_id == kept).values(data=wrong))
    with library.catalog.session() as s:
        stores = library.stores_for(s, library.get_collection(s, "lib"))
    _, vectors = stores.global_.fetch(np.array(sorted(ids.values())))
    report = index_paths(library, "lib", [folder])
    assert (report.indexed, report.skipped, report.failed) == (0, len(ids), 0)  # nothing re-embedded
    assert report.features_refreshed == 1  # coffee's
    after = _features(library)
    assert after["coffee.jpg"] == stored["coffee.jpg"]  # found again, by this extractor
    assert after["chelsea.jpg"] == wrong  # this extractor's already: not looked at
    with library.catalog.session() as s:
        assert s.get(ImageFeatures, old).extractor == local_features.EXTRACTOR
    _, again = stores.global_.fetch(np.array(sorted(ids.values())))
    np.testing.assert_array_equal(again, vectors)


def test_keypoints_found_by_the_decode_threads_are_those_found_between_passes(tmp_path, monkeypatch) -> None:
    """With the model on a GPU the decode threads find the keypoints (on a CPU the batch does,
    between forward passes): the stored features are the same bytes either way."""
    folder = tmp_path / "lib"
    folder.mkdir()
    for name in NAMES:
        skimage_photo(name).save(folder / f"{name}.jpg", quality=90)
    _framed(skimage_photo("astronaut")).save(folder / "framed.jpg", quality=90)
    stored = []
    for between in (True, False):
        monkeypatch.setattr(ChunkRun, "keypoints_between_passes", property(lambda self, between=between: between))
        settings = replace(load_settings({}), home=tmp_path / f"home-{between}",
                           database_url=f"sqlite:///{tmp_path}/c-{between}.db", vector_backend="faiss", model=None)
        library = Library(settings)
        try:
            assert index_paths(library, "lib", [folder]).indexed == len(NAMES) + 1
            stored.append(_features(library))
        finally:
            library.close()
    assert len(stored[0]) == len(NAMES) + 1 and stored[0] == stored[1]


def test_a_picture_whose_keypoints_cannot_be_found_fails_alone(tmp_path, monkeypatch) -> None:
    """Keypoints are found for a whole batch at once: an OpenCV failure on one picture fails that
    file, with the reason, and the batch's other files are indexed with their features."""
    folder = tmp_path / "lib"
    folder.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        skimage_photo(name).save(folder / f"{name}.jpg", quality=90)
    broken = verification.grey_levels(read_image(folder / "coffee.jpg", target_long_side=verification.VERIFY_SIDE).image)
    detect = local_features.detect

    def failing_on_coffee(prepared: local_features.Prepared):
        if np.array_equal(prepared.grey, broken):
            raise cv2.error("OpenCV(5.0.0) orb.cpp: (-215:Assertion failed) in function 'detectAndCompute'")
        return detect(prepared)

    monkeypatch.setattr(local_features, "detect", failing_on_coffee)
    settings = replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                       vector_backend="faiss", model=None)
    library = Library(settings)
    try:
        report = index_paths(library, "lib", [folder])
        assert (report.indexed, report.failed) == (2, 1)
        assert sorted(_features(library)) == ["astronaut.jpg", "chelsea.jpg"]
        with library.catalog.session() as s:
            status, error = s.execute(select(Row.status, Row.error).where(Row.path.endswith("coffee.jpg"))).one()
    finally:
        library.close()
    assert status == "failed" and "coffee.jpg: cannot find local features (error:" in error


def test_a_thumbnail_too_small_for_keypoints_joins_its_photo(tmp_path, monkeypatch) -> None:
    """A thumbnail has too few keypoints for geometry to say anything: judged on the cheap evidence,
    it joins its photo's near group, where "no inliers" read as evidence kept it out; and it
    joins no other photo."""
    folder = tmp_path / "lib"
    folder.mkdir()
    for name in NAMES:
        picture = skimage_photo(name)
        picture.save(folder / f"{name}.jpg", quality=90)
        picture.copy().resize((64, round(64 * picture.height / picture.width))).save(folder / f"{name}_thumbnail.jpg")
    settings = replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                       vector_backend="faiss", model=None)
    library = Library(settings)
    try:
        assert index_paths(library, "lib", [folder]).indexed == 2 * len(NAMES)
        thumbnails = {name: local_features.decode(data) for name, data in _features(library).items() if "thumbnail" in name}
        assert all(len(points.points) < verification.MIN_TELLING_KEYPOINTS for points in thumbnails.values())

        def near() -> list[set[str]]:
            return [{Path(p).stem for p in g.paths} for g in find_duplicates(library, "lib", save=False) if g.kind == "near"]

        groups = near()
        joined = [name for name in NAMES if any({name, f"{name}_thumbnail"} <= g for g in groups)]
        assert len(joined) >= 4, groups
        assert all(len({n.split("_")[0] for n in g}) == 1 for g in groups), groups
        monkeypatch.setattr(verification, "MIN_TELLING_KEYPOINTS", 0)  # their zero inliers taken as evidence
        assert not any("thumbnail" in n for g in near() for n in g)
    finally:
        library.close()


def test_pairs_verified_on_every_core_are_verified_as_in_process(library, monkeypatch) -> None:
    """The scan's geometry in worker processes (each reading the stored features itself) gives
    every pair the very geometry this process gives it."""
    library, _ = library
    with library.catalog.session() as s:
        paths = dict(s.execute(select(Row.id, Row.path)).all())
    ids = sorted(paths)
    pairs = [(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]][:60]
    here = geometry.verify_pairs(library, pairs, paths, workers=1)
    monkeypatch.setattr(geometry, "POOL_MIN_PAIRS", 0)
    monkeypatch.setattr(geometry, "BATCH", 16)  # several batches, so both workers take some
    pooled = geometry.verify_pairs(library, pairs, paths, workers=2)
    assert pooled == here
    assert sum(1 for g in here.values() if g is not None and g.inliers >= 20) >= 3  # copies among them


def test_a_scans_stages_share_one_pool_of_processes(library, monkeypatch) -> None:
    """The scan's pairs and then its support check's cross pairs are verified on one pool of
    worker processes (each start costs seconds), closed with the scan, with the geometry this
    process would find."""
    library, _ = library
    with library.catalog.session() as s:
        paths = dict(s.execute(select(Row.id, Row.path)).all())
    ids = sorted(paths)
    pairs = [(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]]
    first, cross = pairs[:30], pairs[30:60]
    here = geometry.verify_pairs(library, first + cross, paths, workers=1)
    started = []

    class Counted(geometry.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs) -> None:
            started.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(geometry, "POOL_MIN_PAIRS", 0)
    monkeypatch.setattr(geometry, "ProcessPoolExecutor", Counted)
    cal = calibration_for(library.embedder.vit, 0.9)
    with geometry.GeometryPool(library, workers=2) as pool:
        pooled = geometry.verify_pairs(library, first, paths, pool=pool)
        judged = pair_judge(library, "lib", cal, pool)(cross)
        assert len(started) == 1 and pool.executor is started[0]
    assert pool.executor is None and started[0]._shutdown_thread  # closed with the scan
    assert pooled == {pair: here[pair] for pair in first}
    assert {pair: e.geometry for pair, e in judged.items()} == {pair: here[pair] for pair in cross}


def test_a_daemonic_process_verifies_its_pairs_itself(library, monkeypatch) -> None:
    """A Celery prefork child is daemonic and may not start processes: its scan verifies in-process."""
    library, _ = library
    with library.catalog.session() as s:
        paths = dict(s.execute(select(Row.id, Row.path)).all())
    pairs = [(a, b) for a in sorted(paths)[:3] for b in sorted(paths)[3:6]]

    class Daemonic:
        daemon = True

    def no_pool(*args, **kwargs):
        raise AssertionError("a daemonic process started a process pool")

    monkeypatch.setattr(geometry, "POOL_MIN_PAIRS", 0)
    monkeypatch.setattr(geometry, "current_process", lambda: Daemonic())
    monkeypatch.setattr(geometry, "ProcessPoolExecutor", no_pool)
    assert len(geometry.verify_pairs(library, pairs, paths, workers=2)) == len(pairs)
