"""A scan skips the pairs whose pictures its verified near links have already joined: fewer pairs
reach geometry, and the groups are those of verifying every pair; pictures a reviewer kept apart
are never skipped, and links below the review's near threshold join nothing."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

import pytest
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from dinoseek.settings import load_settings
from indexer.duplicates import find_duplicates, saved_groups
from indexer.duplicates import geometry as geometry_module
from indexer.duplicates.geometry import local_order, verification_order, verify_pairs
from indexer.duplicates.near_joins import NearJoins
from indexer.duplicates.scan import first_stage, last_stage, pair_judge
from indexer.jobs import index_paths
from indexer.library import Library
from indexer.verdicts import Calibration, PairEvidence
from indexer.verification import Geometry
from tests.support.photos import skimage_photo

PHOTOS = ("astronaut", "coffee", "chelsea")


def _copies(picture: Image.Image) -> dict[str, Image.Image]:
    w, h = picture.size
    return {"small": picture.resize((w * 2 // 3, h * 2 // 3)),
            "bright": ImageEnhance.Brightness(picture).enhance(1.25),
            "blurred": picture.filter(ImageFilter.GaussianBlur(1.5)),
            "cropped": picture.crop((w // 12, h // 12, w - w // 12, h - h // 12)),
            "grey": ImageOps.grayscale(picture).convert("RGB"),
            "contrast": ImageEnhance.Contrast(picture).enhance(0.7)}


@pytest.fixture(scope="module")
def copies_library(tmp_path_factory):
    root = tmp_path_factory.mktemp("near-joins")
    folder = root / "lib"
    folder.mkdir()
    count = 0
    for name in PHOTOS:
        photo = skimage_photo(name)
        photo.save(folder / f"{name}.png")
        for edit, copy in _copies(photo).items():
            copy.save(folder / f"{name}__{edit}.jpg", quality=90)
        count += 1 + len(_copies(photo))
    settings = replace(load_settings({}), home=root / "home", database_url=f"sqlite:///{root}/c.db",
                       vector_backend="faiss", model=None)
    library = Library(settings)
    assert index_paths(library, "lib", [folder]).indexed == count
    yield library
    library.close()


def _shape(groups) -> list[tuple[str, list[str]]]:
    return sorted((g.kind, sorted(p.rsplit("/", 1)[-1] for p in g.paths)) for g in groups)


def test_scan_skips_joined_pairs_and_keeps_the_groups(copies_library):
    plan = first_stage(copies_library, "lib")
    judge = pair_judge(copies_library, "lib", plan.calibration)
    every, _ = last_stage(plan, verify_pairs(copies_library, plan.wanted, plan.paths), judge)

    plan = first_stage(copies_library, "lib")
    joins = plan.near_joins()
    geometry = verify_pairs(copies_library, plan.wanted, plan.paths, joins=joins)
    plan.skipped = joins.skipped
    skipping, judged = last_stage(plan, geometry, judge)

    assert joins.skipped, "every pair among seven copies of a photo was verified"
    assert len(geometry) + len(joins.skipped) == len(plan.wanted)
    assert not joins.skipped & set(geometry)
    assert _shape(skipping) == _shape(every)
    near = [sorted({p.rsplit("/", 1)[-1].split("__")[0].split(".")[0] for p in g.paths}) for g in skipping
            if g.kind == "near"]
    assert sorted(near) == [[name] for name in sorted(PHOTOS)]  # each photo with its copies, none mixed
    assert not {(e.a, e.b) for e in judged} & joins.skipped  # a skipped pair shows no evidence of its own

    groups = find_duplicates(copies_library, "lib")
    assert _shape(groups) == _shape(every) == _shape(saved_groups(copies_library, "lib"))


def test_worker_processes_skip_within_and_across_waves(copies_library, monkeypatch):
    monkeypatch.setattr(geometry_module, "POOL_MIN_PAIRS", 0)
    monkeypatch.setattr(geometry_module, "BATCH", 4)  # several batches a wave: skipped within each
    monkeypatch.setattr(geometry_module, "WAVE", 12)  # several waves: skipped across them
    plan = first_stage(copies_library, "lib")
    alone = plan.near_joins()
    in_process = verify_pairs(copies_library, plan.wanted, plan.paths, workers=1, joins=alone)
    joins = plan.near_joins()
    pooled = verify_pairs(copies_library, plan.wanted, plan.paths, workers=2, joins=joins)
    assert joins.skipped and len(pooled) + len(joins.skipped) == len(plan.wanted)
    assert in_process.keys() <= set(plan.wanted) and alone.skipped
    plan.skipped = joins.skipped
    groups, _ = last_stage(plan, pooled, pair_judge(copies_library, "lib", plan.calibration))
    assert _shape(groups) == _shape(saved_groups(copies_library, "lib"))


def _calibration() -> Calibration:
    """The descriptor decides: a cosine of 0.9 is an even copy probability."""
    return Calibration.fallback(0.9)


def test_joins_respect_the_review():
    evidence = {(1, 2): PairEvidence(0.99), (2, 3): PairEvidence(0.99), (1, 3): PairEvidence(0.95),
                (3, 4): PairEvidence(0.92), (4, 5): PairEvidence(0.99), (3, 5): PairEvidence(0.99)}
    joins = NearJoins(_calibration(), evidence, near_floor=0.8, apart=[(4, 5)])
    assert joins.strongest_first(evidence)[:2] == [(1, 2), (2, 3)]
    for pair in [(1, 2), (2, 3), (3, 4)]:
        joins.settle(*pair, None)
    assert joins.joined(1, 3)
    assert not joins.joined(3, 4)  # a cosine of 0.92 is a near verdict (0.60) but below the review's 0.8
    joins.settle(3, 5, None)
    assert not joins.joined(3, 5)  # 5 was marked apart from 4: its pairs are always verified
    assert not joins.joined(4, 5)


def test_a_workers_share_keeps_the_sets_and_the_pairs_marked_apart():
    evidence = {(1, 2): PairEvidence(0.99), (2, 3): PairEvidence(0.99), (3, 6): PairEvidence(0.99),
                (6, 7): PairEvidence(0.99), (7, 8): PairEvidence(0.99)}
    joins = NearJoins(_calibration(), evidence, apart=[(1, 8)])
    joins.settle(1, 2, None)
    joins.settle(2, 3, None)
    joins.settle(6, 7, Geometry(100, 80, 0.8, 0.6))
    share = joins.part([(3, 6), (7, 8)])
    assert share.evidence.keys() == {(3, 6), (7, 8)}
    share.settle(3, 6, None)  # joins 1-2-3 with 6-7
    assert share.joined(3, 7) and joins.joined(6, 7) and not joins.joined(3, 6)
    share.settle(7, 8, None)  # would put 8 with 1, which a reviewer kept apart
    assert share.sets.find(8) != share.sets.find(3)


def test_pairs_that_could_join_two_sets_come_first():
    evidence = {(1, 2): PairEvidence(0.99), (1, 3): PairEvidence(0.985), (2, 3): PairEvidence(0.98),
                (3, 4): PairEvidence(0.97), (4, 5): PairEvidence(0.96), (5, 6): PairEvidence(0.95)}
    joins = NearJoins(_calibration(), evidence, apart=[(5, 9)])
    assert joins.strongest_first(evidence) == [(1, 2), (1, 3), (2, 3), (3, 4), (4, 5), (5, 6)]
    # 2-3 is joined once 1-2 and 1-3 are near links; 4-5 and 5-6 touch 5, which a reviewer kept
    # apart from 9: its pairs are always verified, so they never wait
    assert joins.spanning_first(evidence) == [(1, 2), (1, 3), (3, 4), (4, 5), (5, 6), (2, 3)]
    joins.settle(1, 2, None)
    joins.settle(2, 3, None)
    assert joins.spanning_first([(1, 3), (3, 4)]) == [(3, 4), (1, 3)]  # 1-3 already joined: last
    order = verification_order(joins, list(evidence))
    assert sorted(order) == sorted(evidence)


def _reads(order: list[tuple[int, int]], cache: int) -> int:
    """Pictures read verifying the pairs in this order through an LRU cache of ``cache`` pictures."""
    held: OrderedDict[int, None] = OrderedDict()
    reads = 0
    for pair in order:
        for picture in pair:
            if picture in held:
                held.move_to_end(picture)
                continue
            reads += 1
            held[picture] = None
            if len(held) > cache:
                held.popitem(last=False)
    return reads


def test_pairs_are_verified_block_by_block_of_pictures_they_bring_together():
    # 60 photos with 7 copies each, a photo's pictures spread over the ids (as a library indexed
    # folder by folder lays them out), every pair of a photo's pictures a candidate, in a global
    # strongest-first order that visits every photo again and again; a few pairs across photos
    groups = [[member * 60 + photo for member in range(8)] for photo in range(60)]
    by_strength = [[(a, b) for i, a in enumerate(g) for b in g[i + 1:]] for g in groups]
    pairs = [rounds[k] for k in range(28) for rounds in by_strength]
    pairs += [(groups[p][0], groups[(p + 1) % 60][3]) for p in range(60)]
    order = local_order(pairs, block=16, cluster=8)
    assert sorted(order) == sorted(pairs)
    assert _reads(pairs, cache=64) > 3 * 480  # the global order reads each picture again and again
    assert _reads(order, cache=64) <= 1.3 * 480  # block by block: about once each
    for group in by_strength:  # and each photo's pairs keep their order
        assert [p for p in order if p in set(group)] == group


def test_a_wave_holds_no_pair_that_its_earlier_pairs_could_join():
    evidence = {(1, 2): PairEvidence(0.99), (1, 3): PairEvidence(0.5), (2, 3): PairEvidence(0.98),
                (3, 4): PairEvidence(0.97), (4, 5): PairEvidence(0.96), (1, 5): PairEvidence(0.95)}
    joins = NearJoins(_calibration(), evidence)
    waves = joins.waves(joins.strongest_first(evidence), size=3)
    # 2-3 waits: 1-2 and 1-3 could join it; the wave is full at 3 pairs
    assert next(waves) == [(1, 2), (2, 3), (3, 4)]
    for pair in [(1, 2), (2, 3), (3, 4)]:
        joins.settle(*pair, None)  # all three near: 1-2-3-4 joined
    assert next(waves) == [(4, 5)]  # 1-3 joined meanwhile: skipped; 1-5 waits for 4-5
    joins.settle(4, 5, None)
    assert next(waves, None) == []  # 1-5 joined by then
    assert next(waves, None) is None
    assert joins.skipped == {(1, 3), (1, 5)}

    joins = NearJoins(_calibration(), evidence)
    waves = joins.waves([(1, 2), (1, 3), (2, 3)], size=8)
    assert next(waves) == [(1, 2), (1, 3)]
    joins.settle(1, 2, None)
    joins.settle(1, 3, None)  # a cosine of 0.5: no near link, so 2-3 is verified after all
    assert next(waves) == [(2, 3)] and not joins.skipped
