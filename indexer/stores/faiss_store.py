"""FAISS vector store: the embedded default.

Exact inner-product search while a store is small, an HNSW graph once it holds ``ann_threshold``
vectors or more (exact search over 50k vectors of 384 dimensions costs a few milliseconds per
query on two cores; HNSW stays well under one). Stored vectors keep their caller ids through our
own position→id table; deletions and replacements leave tombstones that searches skip and that
are compacted away once they pass a fifth of the store. Everything lives in one file written to a
temporary name and renamed, so a crash leaves either the previous or the new state, never a mix.
``faiss-gpu``, when installed with a visible GPU, serves exact searches from a GPU copy.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from indexer.durable import replace_durably
from indexer.stores.base import SearchResult, StoreError, StoreSpec, VectorStore, as_ids, as_vectors, check_batch_size

DEFAULT_ANN_THRESHOLD = 50_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 64  # at least; a query for k neighbours explores max(64, 2k) candidates
COMPACT_FRACTION = 0.2
FILE_FORMAT = "dinoseek-faiss/1"


def load_faiss():
    """The ``faiss`` module (faiss-cpu or faiss-gpu), tuned; StoreError naming the extra when absent."""
    try:
        import faiss  # imported lazily: faiss-cpu or faiss-gpu, whichever is installed
    except ImportError as exc:
        raise StoreError("FAISS is not installed: pip install 'dinoseek[cpu]' (or 'dinoseek[gpu]' with CUDA), "
                         "or set DINOSEEK_VECTOR_BACKEND=qdrant") from exc

    # Exact search of a query batch goes through BLAS only above this many distance computations;
    # faiss's default (128k in 1.15) keeps small batches on a scalar loop that is ~10x slower.
    faiss.cvar.distance_compute_blas_threshold = 16
    return faiss


def faiss_installed() -> bool:
    """Whether the ``faiss`` module imports here (a plain install has no FAISS extra)."""
    try:
        load_faiss()
    except StoreError:
        return False
    return True


def gpu_count(faiss) -> int:
    """GPUs faiss can use (0 with faiss-cpu or a broken CUDA setup)."""
    try:
        return int(faiss.get_num_gpus()) if hasattr(faiss, "StandardGpuResources") else 0
    except Exception:  # noqa: BLE001 - a broken CUDA setup means: no GPU
        return 0


class FaissStore(VectorStore):
    """A FAISS index with caller ids, tombstone deletions and crash-safe single-file persistence."""

    def __init__(self, spec: StoreSpec, directory: Path, ann_threshold: int = DEFAULT_ANN_THRESHOLD) -> None:
        self.spec = spec
        self.path = Path(directory) / f"{spec.name}.faiss"
        self.ann_threshold = ann_threshold
        self._faiss = load_faiss()
        self._lock = threading.RLock()
        self._closed = False
        self._dirty = False
        self._gpu_index = None
        self._stamp: tuple[int, int, int] | None = None  # the file as last read or written (_file_stamp)
        self._remove_stale_partials()
        self._reread()

    def _reread(self) -> None:
        """The store as its file holds it (empty without one), the file's stamp taken first, so a
        rewrite during the read is seen by the next refresh."""
        if self.path.exists():
            self._stamp = self._file_stamp()
            self._load()
        else:
            self._stamp = None
            self._index = self._new_index(kind="exact")
            self._kind = "exact"
            self._ids = np.empty(0, dtype=np.int64)  # position -> caller id
            self._alive = np.empty(0, dtype=bool)
        self._rebuild_position_map()
        self._gpu_index = None
        self._dirty = False

    def _file_stamp(self) -> tuple[int, int, int]:
        """(inode, size, mtime) of the file: a rewrite is a new inode (renamed into place), so a
        filesystem with coarse timestamps cannot hide it behind an unchanged mtime."""
        st = self.path.stat()
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _partial(self, pid: int) -> Path:
        return self.path.with_name(f".{self.path.name}.{pid}.tmp")

    def _remove_stale_partials(self) -> None:
        """Remove half-written files of persists whose process has died."""
        for partial in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            pid = partial.name[len(self.path.name) + 2:-4]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                partial.unlink(missing_ok=True)

    # ------------------------------------------------------------------ index construction
    def _new_index(self, kind: str):
        faiss, d = self._faiss, self.spec.dim
        ip = faiss.METRIC_INNER_PRODUCT
        fp16 = self.spec.precision == "float16"
        if kind == "exact":
            return faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, ip) if fp16 else faiss.IndexFlatIP(d)
        if fp16:
            index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_fp16, HNSW_M, ip)
            index.train(np.zeros((1, d), dtype=np.float32))  # fp16 needs no statistics; marks it trained
        else:
            index = faiss.IndexHNSWFlat(d, HNSW_M, ip)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
        return index

    # Position tables (position -> caller id, position -> live) grow by doubling, so a long run of
    # small upserts costs amortised O(1) each instead of copying the whole table every time.
    @property
    def _ids(self) -> np.ndarray:
        return self._id_buf[: self._size]

    @_ids.setter
    def _ids(self, ids: np.ndarray) -> None:
        self._id_buf, self._size = np.array(ids, dtype=np.int64), len(ids)

    @property
    def _alive(self) -> np.ndarray:
        return self._alive_buf[: self._size]

    @_alive.setter
    def _alive(self, alive: np.ndarray) -> None:
        self._alive_buf = np.array(alive, dtype=bool)

    def _append_positions(self, ids: np.ndarray) -> None:
        need = self._size + len(ids)
        if need > len(self._id_buf):
            capacity = max(need, 2 * len(self._id_buf), 1024)
            id_buf, alive_buf = np.empty(capacity, dtype=np.int64), np.zeros(capacity, dtype=bool)
            id_buf[: self._size], alive_buf[: self._size] = self._ids, self._alive
            self._id_buf, self._alive_buf = id_buf, alive_buf
        self._id_buf[self._size: need] = ids
        self._alive_buf[self._size: need] = True
        self._size = need

    def _rebuild_position_map(self) -> None:
        live = np.flatnonzero(self._alive)
        self._pos = dict(zip(self._ids[live].tolist(), live.tolist()))

    def _all_vectors(self) -> np.ndarray:
        n = self._index.ntotal
        return self._index.reconstruct_n(0, n) if n else np.empty((0, self.spec.dim), dtype=np.float32)

    def _rebuild(self, kind: str | None = None) -> None:
        """Rewrite the index with live vectors only, as ``kind`` (default: what the size calls for)."""
        live = np.flatnonzero(self._alive)
        vectors = self._all_vectors()[live] if len(live) else np.empty((0, self.spec.dim), dtype=np.float32)
        kind = kind or ("hnsw" if len(live) >= self.ann_threshold else "exact")
        index = self._new_index(kind)
        if len(vectors):
            index.add(vectors)
        self._index, self._kind = index, kind
        self._ids, self._alive = self._ids[live], np.ones(len(live), dtype=bool)
        self._rebuild_position_map()
        self._gpu_index = None

    # ------------------------------------------------------------------ protocol
    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"store {self.spec.name!r} is closed")

    @property
    def kind(self) -> str:
        """``exact`` or ``hnsw``: which search structure currently serves queries."""
        return self._kind

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        with self._lock:
            self._check_open()
            ids = as_ids(ids, self.spec.name)
            vectors = as_vectors(vectors, self.spec, rows=len(ids))
            if not len(ids):
                return
            for old in (self._pos.pop(i, None) for i in ids.tolist()):
                if old is not None:
                    self._alive[old] = False
            start = self._index.ntotal
            self._index.add(vectors)
            self._append_positions(ids)
            self._pos.update(zip(ids.tolist(), range(start, start + len(ids))))
            self._gpu_index = None
            self._dirty = True
            self._maybe_restructure()

    def delete(self, ids: np.ndarray) -> int:
        with self._lock:
            self._check_open()
            removed = 0
            for position in (self._pos.pop(i, None) for i in as_ids(ids, self.spec.name).tolist()):
                if position is not None:
                    self._alive[position] = False
                    removed += 1
            if removed:
                self._dirty = True
                self._gpu_index = None
                self._maybe_restructure()
            return removed

    def _maybe_restructure(self) -> None:
        live = len(self._pos)
        dead = self._index.ntotal - live
        wants = "hnsw" if live >= self.ann_threshold else "exact"
        if wants == "hnsw" and self._kind == "exact":
            self._rebuild("hnsw")
        elif wants == "exact" and self._kind == "hnsw" and live < self.ann_threshold // 2:
            self._rebuild("exact")  # hysteresis: shrink back only well below the threshold
        elif dead and dead > COMPACT_FRACTION * max(1, self._index.ntotal):
            self._rebuild(self._kind)

    def fetch(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            self._check_open()
            ids = np.asarray(ids, dtype=np.int64).reshape(-1)
            found = [(i, self._pos[i]) for i in ids.tolist() if i in self._pos]
            if not found:
                return np.empty(0, dtype=np.int64), np.empty((0, self.spec.dim), dtype=np.float32)
            vectors = np.stack([self._index.reconstruct(p) for _, p in found]).astype(np.float32)
            return np.array([i for i, _ in found], dtype=np.int64), vectors

    def scroll(self, batch_size: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        check_batch_size(self.spec, batch_size)
        with self._lock:
            self._check_open()
            ids = np.sort(np.fromiter(self._pos.keys(), dtype=np.int64, count=len(self._pos)))
        for start in range(0, len(ids), batch_size):
            found, vectors = self.fetch(ids[start:start + batch_size])  # ids deleted meanwhile drop out
            if len(found):
                yield found, vectors

    def count(self) -> int:
        with self._lock:
            self._check_open()
            return len(self._pos)

    def _searcher(self):
        """The index to query: a GPU copy of an exact index when faiss-gpu sees a GPU."""
        if self._kind != "exact" or not gpu_count(self._faiss):
            return self._index
        if self._gpu_index is None:
            faiss = self._faiss
            self._gpu_resources = getattr(self, "_gpu_resources", None) or faiss.StandardGpuResources()
            self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self._index)
        return self._gpu_index

    def _search_params(self, k: int = 0):
        """Search parameters: the HNSW beam width for ``k`` results, and a selector that skips
        tombstoned positions. None for an exact index without tombstones (plain search)."""
        faiss = self._faiss
        tombstones = len(self._pos) != self._index.ntotal
        if self._kind != "hnsw" and not tombstones:
            return None
        params = faiss.SearchParametersHNSW() if self._kind == "hnsw" else faiss.SearchParameters()
        if self._kind == "hnsw":
            # efSearch 64 keeps recall@10 at 0.99 on 1M vectors at 0.56 ms a query (128: 0.997 at
            # 1.14 ms); see docs/BENCHMARKS.md. Never narrower than twice the results asked for.
            params.efSearch = max(HNSW_EF_SEARCH, 2 * k)
        if tombstones:
            self._bitmap = np.packbits(self._alive, bitorder="little")  # must outlive the selector
            selector = faiss.IDSelectorBitmap(len(self._alive), faiss.swig_ptr(self._bitmap))
            params.sel = selector
            params.selector_ref = selector  # keep the selector alive as long as the parameters
        return params

    def _raw_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k positions among live vectors (tombstones are filtered inside FAISS)."""
        params = self._search_params(k)
        if params is None:
            return self._searcher().search(queries, k)
        return self._index.search(queries, k, params=params)  # selectors run on the CPU index

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        with self._lock:
            self._check_open()
            if k <= 0:
                raise StoreError(f"store {self.spec.name!r}: k must be positive, got {k}")
            queries = as_vectors(queries, self.spec)
            ids = np.full((len(queries), k), -1, dtype=np.int64)
            scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
            if not len(self._pos) or not len(queries):
                return SearchResult(ids, scores)
            raw_s, raw_p = self._raw_search(queries, min(k, len(self._pos)))
            valid = raw_p >= 0
            cols = raw_p.shape[1]
            ids[:, :cols] = np.where(valid, self._ids[np.clip(raw_p, 0, None)], -1)
            scores[:, :cols] = np.where(valid, raw_s, -np.inf)
            return SearchResult(ids, scores)

    def range_search(self, queries: np.ndarray, threshold: float) -> list[tuple[np.ndarray, np.ndarray]]:
        with self._lock:
            self._check_open()
            queries = as_vectors(queries, self.spec)
            if not len(self._pos):
                return [(np.empty(0, np.int64), np.empty(0, np.float32)) for _ in range(len(queries))]
            if self._kind == "exact":
                return self._exact_range(queries, threshold)
            return self._graph_range(queries, threshold)

    def _exact_range(self, queries: np.ndarray, threshold: float) -> list[tuple[np.ndarray, np.ndarray]]:
        params = self._search_params()
        lims, scores, positions = self._index.range_search(queries, float(threshold), params=params)
        out = []
        for row in range(len(queries)):
            p, s = positions[lims[row]: lims[row + 1]], scores[lims[row]: lims[row + 1]]
            order = np.argsort(-s, kind="stable")
            out.append((self._ids[p[order]], s[order].astype(np.float32)))
        return out

    def _graph_range(self, queries: np.ndarray, threshold: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """HNSW has no radius search: search k neighbours for the whole batch, then widen k (x4) only
        for the rows whose k-th neighbour still scores above the threshold."""
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(queries)
        rows, k, live = np.arange(len(queries)), 32, len(self._pos)
        while len(rows):
            kk = min(k, live)
            scores, positions = self._raw_search(queries[rows], kk)
            complete = (kk >= live) | (scores[:, -1] < threshold) | (positions[:, -1] < 0)
            for r, s_row, p_row in zip(rows[complete], scores[complete], positions[complete]):
                keep = (p_row >= 0) & (s_row >= threshold)
                out[r] = (self._ids[p_row[keep]], s_row[keep].astype(np.float32))
            rows, k = rows[~complete], k * 4
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ persistence
    def persist(self) -> None:
        with self._lock:
            self._check_open()
            if not self._dirty and self.path.exists():
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._partial(os.getpid())
            try:
                with open(tmp, "wb") as fh:  # straight to the file: no second in-memory copy of the index
                    np.savez(fh, format=np.array(FILE_FORMAT), dim=np.array(self.spec.dim),
                             precision=np.array(self.spec.precision), kind=np.array(self._kind),
                             index=self._faiss.serialize_index(self._index), ids=self._ids, alive=self._alive)
                replace_durably(tmp, self.path)
            except Exception as exc:
                self._discard_unpersisted(tmp)
                raise StoreError(f"{self.path}: could not persist ({type(exc).__name__}: {exc}); the changes since "
                                 "the last persist were discarded and the store re-read from its file") from exc
            self._dirty = False
            self._stamp = self._file_stamp()

    def _discard_unpersisted(self, tmp: Path) -> None:
        """After a failed persist: no partial file left, and the store as its file holds it (the
        writes that failed are the caller's to redo: their chunks were not committed)."""
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        self._reread()

    def _load(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                if str(data["format"]) != FILE_FORMAT:
                    raise StoreError(f"{self.path}: not a dinoseek FAISS store (format {data['format']})")
                dim, precision = int(data["dim"]), str(data["precision"])
                self._index = self._faiss.deserialize_index(data["index"])
                self._kind = str(data["kind"])
                self._ids, self._alive = data["ids"].astype(np.int64), data["alive"].astype(bool)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoding failure means an unusable file
            raise StoreError(f"{self.path}: cannot read FAISS store ({exc})") from exc
        if dim != self.spec.dim or precision != self.spec.precision:
            raise StoreError(f"{self.path}: holds {dim}-d {precision} vectors, expected {self.spec.dim}-d "
                             f"{self.spec.precision}")
        if self._index.ntotal != len(self._ids):
            raise StoreError(f"{self.path}: index holds {self._index.ntotal} vectors but {len(self._ids)} ids")

    def refresh(self) -> bool:
        """Re-read the file if another process rewrote it since we loaded or wrote it."""
        with self._lock:
            self._check_open()
            if self._dirty or not self.path.exists():
                return False
            if self._file_stamp() == self._stamp:
                return False
            self._reread()
            return True

    def discard(self) -> None:
        """Close without persisting (the file was deleted on purpose: a superseded generation)."""
        with self._lock:
            self._closed = True
            self._index = self._gpu_index = None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.persist()
            self._closed = True
            self._index = self._gpu_index = None


def _alive(pid: int) -> bool:
    """Whether a process with this id runs (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True
