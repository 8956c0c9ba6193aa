"""Backgrounds measured against a collection's panel: a picture's background stays what the verdict
models were fitted on as the collection grows, instead of growing with it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from dinoseek.settings import load_settings
from indexer import background
from indexer.background import PANEL_SIZE, collection_panel, draw_panel
from indexer.library import Library
from indexer.stores.base import StoreSpec
from indexer.stores.faiss_store import FaissStore
from indexer.verdicts import background_mean


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
        assert len(panel.ids) == min(size, PANEL_SIZE) and panel.collection_size == size
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
    own = panel.background_of(np.array([100]), vectors[:1])[100]
    sims = -np.sort(-(vectors[1:] @ vectors[0]))
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
