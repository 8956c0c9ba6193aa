"""FAISS-specific behaviour beyond the shared conformance suite: exact→HNSW switch, compaction,
crash-safe writes, readers picking up a writer's changes."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from indexer.stores.base import StoreError, StoreSpec
from indexer.stores.faiss_store import FaissStore


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(4, n // 40), dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, len(centres), n)] + 0.8 * rng.standard_normal((n, dim)) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("precision", ["float32", "float16"])
def test_switches_to_hnsw_and_keeps_recall(tmp_path, precision) -> None:
    data, queries = clustered(3000), clustered(200, seed=1)
    store = FaissStore(StoreSpec("s", 32, precision), tmp_path, ann_threshold=1000)
    store.upsert(np.arange(500), data[:500])
    assert store.kind == "exact"
    store.upsert(np.arange(500, 3000), data[500:])
    assert store.kind == "hnsw" and store.count() == 3000
    truth = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    found = store.search(queries, 10).ids
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found.tolist(), truth.tolist())])
    assert recall >= 0.95
    # range search on the graph returns what brute force returns
    sims = queries[:20] @ data.T
    for q, (ids, scores) in enumerate(store.range_search(queries[:20], 0.75)):
        expected = set(np.flatnonzero(sims[q] >= 0.75 + 1e-3).tolist())
        assert expected <= set(ids.tolist()) and (scores >= 0.75 - 1e-6).all()
    # a few deletions stay as tombstones that the graph search skips, without losing recall
    gone = np.unique(truth[:, 0])
    assert store.delete(gone) == len(gone) and store._index.ntotal == 3000  # noqa: SLF001 - not compacted
    live = np.setdiff1d(np.arange(3000), gone)
    truth_live = live[np.argsort(-(queries @ data[live].T), axis=1)[:, :10]]
    found = store.search(queries, 10).ids
    assert not set(found.ravel().tolist()) & set(gone.tolist())
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found.tolist(), truth_live.tolist())])
    assert recall >= 0.95
    store.upsert(gone, data[gone])  # restore them for what follows
    # shrinking well below the threshold goes back to exact search
    store.delete(np.arange(2700))
    assert store.kind == "exact" and store.count() == 300


def test_deletions_are_compacted(tmp_path) -> None:
    data = clustered(400)
    store = FaissStore(StoreSpec("s", 32), tmp_path)
    store.upsert(np.arange(400), data)
    store.delete(np.arange(0, 400, 2))  # half the store: more than the compaction fraction
    assert store._index.ntotal == 200  # noqa: SLF001 - tombstones are gone, not merely hidden
    assert set(store.search(data[1:2], 1).ids[0].tolist()) == {1}
    store.upsert(np.arange(1, 21, 2), data[:10])  # replacements leave tombstones until compaction
    assert store.count() == 200
    found, vectors = store.fetch(np.array([1, 3]))
    assert np.allclose(vectors, data[:2], atol=1e-6)


def test_a_failed_write_leaves_the_previous_file(tmp_path, monkeypatch) -> None:
    data = clustered(100)
    store = FaissStore(StoreSpec("s", 32), tmp_path)
    store.upsert(np.arange(50), data[:50])
    store.persist()
    store.upsert(np.arange(50, 100), data[50:])

    def crash(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StoreError, match="disk full"):
        store.persist()
    monkeypatch.undo()
    reopened = FaissStore(StoreSpec("s", 32), tmp_path)
    assert reopened.count() == 50  # the old state, complete; never a half-written file
    assert store.count() == 50  # the failed writes discarded: their chunks were not committed, they are redone
    store.upsert(np.arange(50, 100), data[50:])
    store.persist()
    assert FaissStore(StoreSpec("s", 32), tmp_path).count() == 100


def test_reader_sees_a_writers_new_vectors(tmp_path) -> None:
    data = clustered(60)
    writer = FaissStore(StoreSpec("s", 32), tmp_path)
    writer.upsert(np.arange(30), data[:30])
    writer.persist()
    reader = FaissStore(StoreSpec("s", 32), tmp_path)
    assert reader.count() == 30 and not reader.refresh()
    writer.upsert(np.arange(30, 60), data[30:])
    writer.persist()
    assert reader.refresh() and reader.count() == 60
    assert reader.search(data[45:46], 1).ids[0, 0] == 45


def test_unreadable_or_mismatched_file(tmp_path) -> None:
    (tmp_path / "bad.faiss").write_bytes(b"not a store")
    with pytest.raises(StoreError, match="cannot read FAISS store"):
        FaissStore(StoreSpec("bad", 32), tmp_path)
    store = FaissStore(StoreSpec("s", 32), tmp_path)
    store.upsert(np.arange(3), clustered(3))
    store.close()
    with pytest.raises(StoreError, match="expected 64-d"):
        FaissStore(StoreSpec("s", 64), tmp_path)


def test_a_rewrite_behind_an_unchanged_mtime_is_still_seen(tmp_path) -> None:
    """Issue 17, finding 13: coarse-timestamp filesystems (FAT, some NAS shares) can give a rewrite
    the old mtime; the store compares (inode, size, mtime), so another process's write is read."""
    spec = StoreSpec("s", 32, "float32")
    reader = FaissStore(spec, tmp_path)
    reader.upsert(np.arange(10), clustered(10))
    reader.persist()
    old = os.stat(tmp_path / "s.faiss")
    writer = FaissStore(spec, tmp_path)
    writer.upsert(np.arange(10, 30), clustered(20, seed=1))
    writer.persist()
    os.utime(tmp_path / "s.faiss", ns=(old.st_atime_ns, old.st_mtime_ns))  # the same mtime as before
    assert reader.refresh() and reader.count() == 30
    writer.close()
    reader.close()


def test_a_failed_persist_leaves_no_partial_file_and_the_store_reloads(tmp_path) -> None:
    """Issue 17, finding 13: after a persist fails, nothing half-written is left, the store holds
    what its file holds again (not the writes that failed), and it sees later writes of others."""
    spec = StoreSpec("s", 32, "float32")
    store = FaissStore(spec, tmp_path)
    store.upsert(np.arange(10), clustered(10))
    store.persist()
    store.upsert(np.arange(10, 15), clustered(5, seed=2))
    blocker = tmp_path / f".s.faiss.{os.getpid()}.tmp"
    blocker.mkdir()  # the partial file cannot be written: the persist fails
    with pytest.raises(StoreError, match="could not persist .* re-read from its file"):
        store.persist()
    blocker.rmdir()
    assert store.count() == 10 and not list(tmp_path.glob(".s.faiss.*.tmp"))
    other = FaissStore(spec, tmp_path)
    other.upsert(np.arange(100, 103), clustered(3, seed=3))
    other.persist()
    other.close()
    assert store.refresh() and store.count() == 13  # a dirty store never reloaded before
    store.close()


def test_partial_files_of_dead_persists_are_removed(tmp_path) -> None:
    dead = subprocess_pid_that_exited()
    partial = tmp_path / f".s.faiss.{dead}.tmp"
    partial.write_bytes(b"half an index")
    live = tmp_path / f".s.faiss.{os.getppid()}.tmp"  # a persist of a running process: left alone
    live.write_bytes(b"in progress")
    FaissStore(StoreSpec("s", 32, "float32"), tmp_path).close()
    assert not partial.exists() and live.exists()


def subprocess_pid_that_exited() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
