"""One behaviour contract, every vector-store backend: FAISS, Qdrant Edge, Qdrant (local mode), and
Qdrant's multivector patch layout (local mode; ids keyed by image in strides of 64 where a case's
spec has none, so sparse ids are one cell each of many images and small ids several cells of one).

Each case checks results against numpy brute force or against what was just written, so a backend
that drops, duplicates, misorders or misremembers vectors fails here.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from indexer.stores.base import StoreError, StoreSpec, VectorStore

DIM = 32
BACKENDS = ("faiss", "qdrant-edge", "qdrant-local", "qdrant-local-multivector")

# qdrant-client's local mode searches by brute force and says once that it ignores search params.
pytestmark = pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning")

Factory = Callable[[StoreSpec, Path], VectorStore]


def _open(backend: str, spec: StoreSpec, path: Path, scratch: dict[Path, Path]) -> VectorStore:
    if backend == "faiss":
        try:
            from indexer.stores.faiss_store import FaissStore
        except ModuleNotFoundError as exc:
            if exc.name == "indexer.stores.faiss_store":
                pytest.skip("indexer/stores/faiss_store.py does not exist yet")
            raise
        return FaissStore(spec, path)
    if backend == "qdrant-edge":
        from indexer.stores.qdrant_edge_store import QdrantEdgeStore

        return QdrantEdgeStore(spec, path)
    from qdrant_client import QdrantClient

    from indexer.stores.qdrant_multivector_store import QdrantMultivectorStore
    from indexer.stores.qdrant_server_store import QdrantServerStore

    # Local mode commits one SQLite transaction per point (~15 ms each on a busy disk), so its files
    # go to tmpfs when there is one; the same ``path`` maps to the same folder, so reopening is real.
    if path not in scratch:
        shm = Path("/dev/shm")
        scratch[path] = Path(tempfile.mkdtemp(prefix="qdrant-local-", dir=shm)) if shm.is_dir() else path / "qdrant-local"
    if backend == "qdrant-local-multivector":
        spec = spec if spec.id_stride else replace(spec, id_stride=64)
        return QdrantMultivectorStore(spec, QdrantClient(path=str(scratch[path])), owns_client=True)
    return QdrantServerStore(spec, QdrantClient(path=str(scratch[path])), owns_client=True)


@pytest.fixture(params=BACKENDS)
def store_factory(request: pytest.FixtureRequest) -> Iterator[Factory]:
    """``(spec, path) -> store``; calling it again on the same path reopens what was persisted there."""
    opened: list[VectorStore] = []
    scratch: dict[Path, Path] = {}

    def make(spec: StoreSpec, path: Path) -> VectorStore:
        store = _open(request.param, spec, path, scratch)
        opened.append(store)
        return store

    yield make
    for store in opened:
        try:
            store.close()
        except StoreError:
            pass
    for folder in scratch.values():
        shutil.rmtree(folder, ignore_errors=True)


def unit(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    """``n`` random L2-normalised float32 rows."""
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def sparse_ids(n: int) -> np.ndarray:
    """Ids that are not row positions, so a backend that confuses the two fails."""
    return (np.arange(n, dtype=np.int64) * 7919 + 1_000_003)[::-1].copy()


SPEC = StoreSpec("global", DIM)


def test_each_vector_finds_itself_first(store_factory: Factory, tmp_path: Path) -> None:
    store = store_factory(SPEC, tmp_path)
    ids, x = sparse_ids(200), unit(200, seed=1)
    store.upsert(ids, x)
    assert store.count() == 200
    result = store.search(x, k=3)
    assert result.ids.shape == result.scores.shape == (200, 3)
    np.testing.assert_array_equal(result.ids[:, 0], ids)
    np.testing.assert_allclose(result.scores[:, 0], 1.0, atol=1e-4)
    assert (np.diff(result.scores, axis=1) <= 1e-6).all(), "scores are not best first"


def test_search_pads_when_k_exceeds_count(store_factory: Factory, tmp_path: Path) -> None:
    store = store_factory(SPEC, tmp_path)
    ids, x = sparse_ids(5), unit(5, seed=2)
    store.upsert(ids, x)
    queries = unit(3, seed=3)
    result = store.search(queries, k=8)
    assert result.ids.shape == result.scores.shape == (3, 8)
    assert (result.ids[:, 5:] == -1).all()
    assert np.isneginf(result.scores[:, 5:]).all()
    expected = queries @ x.T
    for row in range(3):
        order = np.argsort(-expected[row])
        np.testing.assert_array_equal(result.ids[row, :5], ids[order])
        np.testing.assert_allclose(result.scores[row, :5], expected[row, order], atol=1e-5)


def test_search_on_empty_store_is_all_padding(store_factory: Factory, tmp_path: Path) -> None:
    store = store_factory(SPEC, tmp_path)
    result = store.search(unit(2, seed=4), k=4)
    assert (result.ids == -1).all() and np.isneginf(result.scores).all()
    assert store.count() == 0


def test_upsert_of_existing_id_replaces_its_vector(store_factory: Factory, tmp_path: Path) -> None:
    store = store_factory(SPEC, tmp_path)
    ids, x = sparse_ids(50), unit(50, seed=5)
    store.upsert(ids, x)
    target, old = ids[17], x[17]
    new = unit(1, seed=6)[0]
    store.upsert(np.array([target]), new[None, :])
    assert store.count() == 50
    top = store.search(new[None, :], k=1)
    assert top.ids[0, 0] == target and top.scores[0, 0] == pytest.approx(1.0, abs=1e-4)
    found_ids, found = store.fetch(np.array([target]))
    np.testing.assert_array_equal(found_ids, [target])
    np.testing.assert_allclose(found[0], new, atol=1e-6)
    everything = store.search(old[None, :], k=50)
    assert everything.scores[0, 0] < 0.99, "the replaced vector is still searchable"
    assert (everything.ids[0] == target).sum() == 1, "the id is stored twice"


def test_delete_removes_and_counts_only_existing(store_factory: Factory, tmp_path: Path) -> None:
    store = store_factory(SPEC, tmp_path)
    ids, x = sparse_ids(50), unit(50, seed=7)
    store.upsert(ids, x)
    gone = ids[[3, 40]]
    assert store.delete(np.array([gone[0], 424242, gone[1]])) == 2
    assert store.count() == 48
    result = store.search(x, k=50)
    assert not np.isin(result.ids, gone).any()
    assert (result.ids[:, 48:] == -1).all()
    assert store.delete(gone) == 0
    assert store.delete(np.array([7, 8, 9])) == 0
    assert store.delete(np.array([], dtype=np.int64)) == 0
    assert store.count() == 48
    found_ids, found = store.fetch(gone)
    assert found_ids.shape == (0,) and found.shape == (0, DIM)


def test_delete_by_image_with_an_id_stride(store_factory: Factory, tmp_path: Path) -> None:
    """Patch-cell stores: id = image id x 8 + slot. Deleting every slot of some images (what the
    indexer asks for), a part of one image's slots, and slots never written all count exactly."""
    stride = 8
    store = store_factory(StoreSpec("cells", DIM, "float16", id_stride=stride), tmp_path)
    images = np.array([3, 4, 5, 9, 1_000_003])
    filled = {3: 8, 4: 5, 5: 8, 9: 2, 1_000_003: 8}  # cells written per image (a grid smaller than the slots)
    ids = np.concatenate([img * stride + np.arange(filled[int(img)]) for img in images]).astype(np.int64)
    x = unit(len(ids), seed=23)
    store.upsert(ids, x)
    assert store.count() == len(ids)

    def every_slot(*imgs: int) -> np.ndarray:
        return (np.array(imgs, dtype=np.int64)[:, None] * stride + np.arange(stride)).reshape(-1)

    assert store.delete(every_slot(4, 9, 77)) == 5 + 2  # image 77 has no cells
    assert store.delete(np.array([3 * stride + 1, 3 * stride + 6])) == 2  # a part of image 3
    assert store.delete(every_slot(3)) == 6
    assert store.delete(every_slot(3, 4)) == 0
    assert store.count() == 8 + 8
    left = np.concatenate([every_slot(5), every_slot(1_000_003)])
    found_ids, found = store.fetch(left)
    np.testing.assert_array_equal(found_ids, left)
    np.testing.assert_allclose(found, x[np.isin(ids, left)], atol=1e-2)
    store.upsert(every_slot(4)[:3], unit(3, seed=24))  # an image deleted, then indexed again
    assert store.delete(every_slot(4)) == 3
    assert store.count() == 16


def test_fetch_keeps_request_order_and_skips_missing(store_factory: Factory, tmp_path: Path) -> None:
    store = store_factory(SPEC, tmp_path)
    ids, x = np.array([10, 20, 30, 40]), unit(4, seed=8)
    store.upsert(ids, x)
    found_ids, found = store.fetch(np.array([30, 999, 10, 40]))
    np.testing.assert_array_equal(found_ids, [30, 10, 40])
    assert found_ids.dtype == np.int64 and found.dtype == np.float32
    np.testing.assert_allclose(found, x[[2, 0, 3]], atol=1e-6)
    none_ids, none = store.fetch(np.array([], dtype=np.int64))
    assert none_ids.shape == (0,) and none.shape == (0, DIM)


@pytest.mark.parametrize("threshold", [0.35, -0.1])  # ~12 hits per query, and ~350: more than one page
def test_range_search_matches_brute_force(store_factory: Factory, tmp_path: Path, threshold: float) -> None:
    store = store_factory(SPEC, tmp_path)
    ids, x = sparse_ids(500), unit(500, seed=9)
    store.upsert(ids, x)
    queries = np.concatenate([x[:5], unit(10, seed=10)])
    exact = queries @ x.T
    results = store.range_search(queries, threshold)
    assert len(results) == len(queries)
    for row, (got_ids, got_scores) in enumerate(results):
        clear = np.abs(exact[row] - threshold) > 1e-5  # leave float ties at the threshold to the backend
        expected = set(ids[(exact[row] >= threshold) & clear].tolist())
        got = set(got_ids.tolist())
        assert len(got) == len(got_ids), "an id is returned twice"
        assert got & set(ids[clear].tolist()) == expected
        assert (got_scores >= threshold).all()
        assert (np.diff(got_scores) <= 1e-6).all(), "not best first"
        by_id = dict(zip(ids.tolist(), exact[row].tolist()))
        np.testing.assert_allclose(got_scores, [by_id[i] for i in got_ids.tolist()], atol=1e-5)


def test_range_search_on_empty_store(store_factory: Factory, tmp_path: Path) -> None:
    store = store_factory(SPEC, tmp_path)
    results = store.range_search(unit(2, seed=11), 0.0)
    assert [len(i) for i, _ in results] == [0, 0]


def test_persist_close_reopen_gives_back_the_same_store(store_factory: Factory, tmp_path: Path) -> None:
    store = store_factory(SPEC, tmp_path)
    ids, x = sparse_ids(120), unit(120, seed=12)
    store.upsert(ids[:100], x[:100])
    store.persist()
    store.upsert(ids[100:], x[100:])  # written after persist: close() must persist it too
    store.delete(ids[:5])
    queries = unit(8, seed=13)
    before = store.search(queries, k=10)
    store.close()

    again = store_factory(SPEC, tmp_path)
    assert again.count() == 115
    after = again.search(queries, k=10)
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_allclose(after.scores, before.scores, atol=1e-6)
    found_ids, found = again.fetch(ids)
    np.testing.assert_array_equal(found_ids, ids[5:])
    np.testing.assert_allclose(found, x[5:], atol=1e-6)


@pytest.mark.parametrize("precision", ["float32", "float16"])
def test_scroll_gives_every_vector_once_in_ascending_id_order(store_factory: Factory, tmp_path: Path,
                                                              precision: str) -> None:
    store = store_factory(StoreSpec("scrolled", DIM, precision), tmp_path)
    ids, x = sparse_ids(230), unit(230, seed=21)
    store.upsert(ids[:150], x[:150])  # two writes, the second after deletions: ids out of insertion order
    gone = ids[[0, 7, 99, 149]]
    store.delete(gone)
    store.upsert(ids[150:], x[150:])
    alive = np.setdiff1d(ids, gone)  # sorted ascending
    row_of = {int(i): row for row, i in enumerate(ids)}
    for batch_size in (1, 17, 4096):
        batches = list(store.scroll(batch_size))
        assert all(1 <= len(b_ids) == len(b_vectors) <= batch_size for b_ids, b_vectors in batches), \
            "a batch is empty, too large, or its ids and vectors differ in length"
        got_ids = np.concatenate([b_ids for b_ids, _ in batches])
        got = np.concatenate([b_vectors for _, b_vectors in batches])
        assert got_ids.dtype == np.int64 and got.dtype == np.float32 and got.shape == (len(alive), DIM)
        np.testing.assert_array_equal(got_ids, alive)  # ascending, each once, deleted ones absent
        fetched_ids, fetched = store.fetch(got_ids)
        np.testing.assert_array_equal(fetched_ids, got_ids)
        np.testing.assert_array_equal(got, fetched)  # exactly what fetch returns
        tolerance = 1e-2 if precision == "float16" else 1e-6
        np.testing.assert_allclose(got, x[[row_of[i] for i in got_ids.tolist()]], atol=tolerance)
    with pytest.raises(StoreError):
        next(iter(store.scroll(0)))


def test_scroll_of_an_empty_store_yields_nothing(store_factory: Factory, tmp_path: Path) -> None:
    store = store_factory(SPEC, tmp_path)
    assert list(store.scroll(8)) == []
    store.upsert(np.array([5, 3]), unit(2, seed=22))
    store.delete(np.array([5, 3]))
    assert list(store.scroll(8)) == []


def test_wrong_dimension_raises_naming_the_store(store_factory: Factory, tmp_path: Path) -> None:
    store = store_factory(SPEC, tmp_path)
    store.upsert(np.array([1]), unit(1, seed=14))
    with pytest.raises(StoreError, match="global"):
        store.upsert(np.array([2]), unit(1, seed=15, dim=DIM - 1))
    with pytest.raises(StoreError, match="global"):
        store.search(unit(1, seed=16, dim=DIM + 1), k=1)
    with pytest.raises(StoreError, match="global"):
        store.range_search(unit(1, seed=17, dim=DIM + 1), 0.5)
    assert store.count() == 1


def test_negative_ids_raise(store_factory: Factory, tmp_path: Path) -> None:
    store = store_factory(SPEC, tmp_path)
    with pytest.raises(StoreError):
        store.upsert(np.array([-1]), unit(1, seed=18))
    with pytest.raises(StoreError):
        store.delete(np.array([3, -5]))
    assert store.count() == 0


def test_float16_keeps_vectors_within_a_hundredth(store_factory: Factory, tmp_path: Path) -> None:
    store = store_factory(StoreSpec("half", DIM, "float16"), tmp_path)
    ids, x = sparse_ids(100), unit(100, seed=19)
    store.upsert(ids, x)
    found_ids, found = store.fetch(ids)
    np.testing.assert_array_equal(found_ids, ids)
    assert np.abs(found - x).max() < 1e-2
    result = store.search(x, k=1)
    np.testing.assert_array_equal(result.ids[:, 0], ids)
    np.testing.assert_allclose(result.scores[:, 0], 1.0, atol=1e-2)


def test_operations_after_close_raise(store_factory: Factory, tmp_path: Path) -> None:
    store = store_factory(SPEC, tmp_path)
    x = unit(3, seed=20)
    store.upsert(np.array([1, 2, 3]), x)
    store.close()
    calls = {
        "upsert": lambda: store.upsert(np.array([4]), x[:1]),
        "delete": lambda: store.delete(np.array([1])),
        "fetch": lambda: store.fetch(np.array([1])),
        "search": lambda: store.search(x, k=1),
        "range_search": lambda: store.range_search(x, 0.5),
        "count": lambda: store.count(),
        "persist": lambda: store.persist(),
        "scroll": lambda: next(iter(store.scroll())),
    }
    silent = []
    for name, call in calls.items():
        try:
            call()
            silent.append(name)
        except StoreError:
            pass
    assert not silent, f"no StoreError after close from: {silent}"
