"""Backgrounds measured against a collection's panel: a picture's background stays what the verdict
models were fitted on as the collection grows, instead of growing with it."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from dinoseek.settings import load_settings
from indexer import background
from indexer.background import DISTINCT_BELOW, PANEL_SIZE, collection_panel, draw_panel
from indexer.duplicates import find_duplicates
from indexer.jobs import index_paths
from indexer.library import Library
from indexer.stores.base import StoreSpec
from indexer.stores.faiss_store import FaissStore
from indexer.verdicts import background_mean
from tests.support.photos import skimage_photo


def _clustered(rng: np.random.Generator, n: int, dim: int = 32) -> np.ndarray:
    """Unit vectors around 20 themes, as a photo library's descriptors cluster by subject."""
    themes = rng.normal(size=(20, dim))
    vectors = themes[rng.integers(0, 20, n)] + 0.9 * rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_a_background_does_not_grow_with_the_collection(tmp_path) -> None:
    rng = np.random.default_rng(0)
    vectors = _clustered(rng, 6000)
    probe = vectors[:50]
    grown = {}
    for size in (300, 6000):
        store = FaissStore(StoreSpec(f"g{size}", 32), tmp_path)
        store.upsert(np.arange(size), vectors[:size])
        panel = draw_panel(np.arange(size), store)
        assert 0.5 * min(size, PANEL_SIZE) < len(panel.ids) <= min(size, PANEL_SIZE) and panel.collection_size == size
        by_panel = panel.background_of(np.arange(50), probe)
        whole = probe @ vectors[:size].T
        np.fill_diagonal(whole[:, :50], -np.inf)
        grown[size] = (np.mean([by_panel[i] for i in range(50)]),
                       np.mean([background_mean(-np.sort(-row)) for row in whole]))
    panel_small, whole_small = grown[300]
    panel_large, whole_large = grown[6000]
    assert whole_large - whole_small > 0.08  # against the whole collection it grows with it
    assert abs(panel_large - panel_small) < 0.03  # against the panel it stays


def test_a_picture_in_the_panel_is_not_its_own_background(tmp_path) -> None:
    store = FaissStore(StoreSpec("p", 32), tmp_path)
    vectors = _clustered(np.random.default_rng(1), 40)
    store.upsert(np.arange(100, 140), vectors)
    panel = draw_panel(np.arange(100, 140), store)
    assert panel.ids[0] == 100
    own = panel.background_of(np.array([100]), vectors[:1])[100]
    sims = -np.sort(-(panel.vectors[1:] @ vectors[0]))
    assert own == pytest.approx(float(sims[1:11].mean()), abs=1e-5)  # itself left out, then ranks 2-11
    assert panel.backgrounds(vectors[:1])[0] == pytest.approx(float(sims[:10].mean()), abs=1e-5)  # a query: rank 1 is itself
    assert draw_panel([], store).backgrounds(vectors[:2]) == [None, None]


def test_a_collections_panel_is_kept_until_the_collection_grows(tmp_path, monkeypatch) -> None:
    settings = replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                       vector_backend="faiss", model=None)
    library = Library(settings)
    store = FaissStore(StoreSpec("c", 32), tmp_path)
    vectors = _clustered(np.random.default_rng(2), 1000)
    store.upsert(np.arange(1, 401), vectors[:400])
    draws = []
    real = background.draw_panel
    monkeypatch.setattr(background, "draw_panel", lambda ids, s: draws.append(len(ids)) or real(ids, s))
    with library.catalog.session() as s:
        first = collection_panel(s, 7, store)
        assert collection_panel(s, 7, store) is first and len(draws) == 1
        store.upsert(np.arange(401, 411), vectors[400:410])  # 2.5% more: the same panel
        assert collection_panel(s, 7, store) is first
        store.upsert(np.arange(411, 501), vectors[410:500])  # 25% more: drawn again
        assert collection_panel(s, 7, store) is not first and len(draws) == 2
    library.close()


def test_the_panel_holds_one_picture_of_each_photo(tmp_path) -> None:
    rng = np.random.default_rng(3)
    photos = rng.normal(size=(30, 32))
    copies = np.repeat(photos, 11, axis=0) + 0.25 * rng.normal(size=(330, 32))  # each photo and 10 copies, cosine ~0.94
    vectors = (copies / np.linalg.norm(copies, axis=1, keepdims=True)).astype(np.float32)
    store = FaissStore(StoreSpec("copies", 32), tmp_path)
    store.upsert(np.arange(330), vectors)
    panel = draw_panel(np.arange(330), store)
    assert sorted(set((panel.ids // 11).tolist())) == list(range(30)) and len(panel.ids) == 30
    assert (panel.vectors @ panel.vectors.T - np.eye(30)).max() < DISTINCT_BELOW
    # a copy's background is what it is against the other photos, not its own copies' cosine
    others = photos[1:] / np.linalg.norm(photos[1:], axis=1, keepdims=True)
    expected = background_mean([1.0] + sorted((others @ vectors[5]).tolist(), reverse=True))
    assert panel.background_of(np.array([5]), vectors[5:6])[5] == pytest.approx(expected, abs=0.05)
    assert expected < 0.4


def _copies_of(picture: Image.Image, count: int) -> list[Image.Image]:
    """``count`` mild edits of a photo: re-encoded, resized, brightened or darkened."""
    out = []
    for n in range(count):
        scale = 0.55 + 0.4 * n / count
        edited = picture.resize((int(picture.width * scale), int(picture.height * scale)))
        edited = ImageEnhance.Brightness(edited).enhance(0.8 + 0.4 * (n % 3) / 2)
        buf = io.BytesIO()
        edited.save(buf, "JPEG", quality=35 + 5 * n)
        out.append(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return out


def test_a_library_of_many_copies_of_few_photos_keeps_its_copies_near(tmp_path) -> None:
    """Bursts of exports of a few photos: every copy is a near copy of its photo, though a
    picture's nearest neighbours in the whole collection are all its own copies."""
    lib = tmp_path / "lib"
    lib.mkdir()
    names = ("astronaut", "coffee", "chelsea", "rocket")
    for name in names:
        photo = skimage_photo(name)
        photo.save(lib / f"{name}.png")
        for n, copy in enumerate(_copies_of(photo, 12)):
            copy.save(lib / f"{name}_{n}.jpg")
    settings = replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                       vector_backend="faiss", model=None)
    library = Library(settings)
    try:
        assert index_paths(library, "lib", [lib]).indexed == 52
        groups = find_duplicates(library, "lib")
    finally:
        library.close()
    near = [{Path(p).stem.split("_")[0] for p in g.paths} | {f"size{len(g.paths)}"} for g in groups if g.kind == "near"]
    assert sorted(near, key=sorted) == sorted(({name, "size13"} for name in names), key=sorted), near
