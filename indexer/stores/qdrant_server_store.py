"""Qdrant server vector store: one collection per store, reached through ``qdrant-client``.

The collection uses cosine distance and the layout in ``QdrantConfig`` (from dinoseek's settings,
``DINOSEEK_QDRANT_*``): an HNSW graph (m=16, ef_construct=100 by default), and int8 scalar
quantisation kept in RAM (``always_ram``) unless turned off; top-k searches run on the quantised
vectors and rescore the candidates with the stored ones. With ``on_disk`` the stored (original)
vectors are memory-mapped from disk, so RAM holds the int8 copy and the graph and rescoring reads
the originals from disk. ``range_search`` is exact by default (full scan of the stored vectors,
quantisation ignored) so no hit above the threshold is missed. The layout applies when a
collection is created; an existing collection keeps the one it was created with.

A store whose spec has an ``id_stride`` (the patch cells: id = image id x 64 + cell) writes an
integer ``image_id`` payload (id // stride) on every point, with a payload index, and records the
stride in the collection's metadata. Deleting every cell of some images is then one filtered
count and one filtered delete instead of retrieving 64 ids per image. Collections created without
that metadata (by an older dinoseek) keep deleting by id: their older points carry no payload.

The same code serves a real server (``from_url``) and qdrant-client's local mode
(``QdrantClient(path=...)``), which records but ignores HNSW, quantisation, on-disk and payload
index settings and searches by brute force.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer.stores.base import (
    SearchResult,
    StoreError,
    StoreSpec,
    as_ids,
    as_vectors,
    check_batch_size,
    empty_result,
    in_request_order,
    widening_range,
)

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

UPSERT_BATCH = 512  # points per upsert request
QUERY_BATCH = 64  # queries per query_batch_points request
ID_BATCH = 1024  # ids per retrieve/delete request
RANGE_FIRST_LIMIT = 256  # range_search asks for this many hits first and widens while the page is full
THRESHOLD_SLACK = 1e-6  # Qdrant keeps score > threshold; we ask a little lower and keep >= ourselves
IMAGE_ID = "image_id"  # the payload key (and payload index) holding id // id_stride
STRIDE_METADATA = "dinoseek_image_id_stride"  # collection metadata: every point carries IMAGE_ID
OWNER_BATCH = 1024  # image ids per filtered count/delete request
QUANTIZATIONS = ("int8", "none")
PATCH_LAYOUTS = ("points", "multivector")
LAYOUT_METADATA = "dinoseek_patch_layout"  # collection metadata of a multivector patch store
SLOTS = "slots"  # multivector layout: payload listing the slot (id % stride) of each row of the multivector


@dataclass(frozen=True)
class QdrantConfig:
    """How dinoseek talks to a Qdrant server and lays out the collections it creates there
    (``DINOSEEK_QDRANT_API_KEY``, ``_HNSW_M``, ``_HNSW_EF_CONSTRUCT``, ``_QUANTIZATION``, ``_ON_DISK``)."""

    api_key: str | None = None
    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    quantization: str = "int8"  # "int8" (scalar, always in RAM, searches rescore) or "none"
    on_disk: bool = False  # originals memory-mapped from disk; RAM holds the int8 copy and the graph
    patch_layout: str = "points"  # stores with an id stride: one point per cell, or "multivector" per image

    def __post_init__(self) -> None:
        if self.hnsw_m < 0 or self.hnsw_ef_construct < 4:
            raise StoreError(f"Qdrant HNSW needs m >= 0 and ef_construct >= 4, got m={self.hnsw_m}, "
                             f"ef_construct={self.hnsw_ef_construct}")
        if self.quantization not in QUANTIZATIONS:
            raise StoreError(f"Qdrant quantization must be one of {', '.join(QUANTIZATIONS)}, got {self.quantization!r}")
        if self.patch_layout not in PATCH_LAYOUTS:
            raise StoreError(f"Qdrant patch layout must be one of {', '.join(PATCH_LAYOUTS)}, got {self.patch_layout!r}")

    def __repr__(self) -> str:  # the API key stays out of logs and tracebacks
        key = "set" if self.api_key else None
        return (f"QdrantConfig(api_key={key}, hnsw_m={self.hnsw_m}, hnsw_ef_construct={self.hnsw_ef_construct}, "
                f"quantization={self.quantization!r}, on_disk={self.on_disk}, patch_layout={self.patch_layout!r})")


def connect(url: str, config: QdrantConfig | None = None, **kwargs: Any) -> QdrantClient:
    """A client for the Qdrant server at ``url``, with the configured API key (every client the
    product makes comes from here: stores, dropping stores, health checks)."""
    from qdrant_client import QdrantClient

    return QdrantClient(url=url, api_key=(config or QdrantConfig()).api_key, **kwargs)


def _models():
    from qdrant_client import models  # imported lazily: only this backend needs qdrant-client

    return models


def _dense(vector: Any) -> list[float]:
    """The default (unnamed) dense vector of a record, whichever shape the client returns."""
    if isinstance(vector, dict):
        vector = vector[""]
    return vector


def open_server_store(spec: StoreSpec, url: str, config: QdrantConfig | None = None) -> QdrantServerStore:
    """The store for ``spec`` on the Qdrant server at ``url``. A store of image slots (an id stride:
    the patch cells) takes the layout its collection was created with, else the configured one."""
    config = config or QdrantConfig()
    client = connect(url, config)
    try:
        cls = QdrantServerStore
        if spec.id_stride:
            held = _held_layout(client, spec.name)
            if (held or config.patch_layout) == "multivector":
                cls = QdrantMultivectorStore
        return cls(spec, client, owns_client=True, config=config)
    except BaseException:
        client.close()
        raise


def _held_layout(client: QdrantClient, name: str) -> str | None:
    """``points`` or ``multivector`` for an existing collection, None when there is none."""
    try:
        if not client.collection_exists(name):
            return None
        params = client.get_collection(name).config.params.vectors
    except Exception as exc:  # noqa: BLE001 - transport, HTTP and local-mode errors alike
        raise StoreError(f"store {name!r}: Qdrant open failed: {exc}") from exc
    if isinstance(params, dict):
        params = params.get("")
    return "multivector" if getattr(params, "multivector_config", None) is not None else "points"


class QdrantServerStore:
    """A Qdrant collection holding one named set of vectors."""

    multivector = False  # QdrantMultivectorStore: one point per image, its cells a MAX_SIM multivector

    def __init__(self, spec: StoreSpec, client: QdrantClient, *, owns_client: bool = False, exact_range: bool = True,
                 config: QdrantConfig | None = None) -> None:
        self.spec = spec
        self.collection = spec.name
        self.config = config or QdrantConfig()
        self.owns_client = owns_client  # close() closes the client only when the store owns it
        self.exact_range = exact_range  # False: range_search walks the HNSW graph (faster, may miss hits)
        self._client: QdrantClient | None = client
        self._m = _models()
        self._lock = threading.RLock()
        self._stride = spec.id_stride  # image_id payload written on upsert: id // stride (0: none)
        self._delete_by_image = False  # every point carries the payload: delete whole images by filter
        with self._server("open"):
            self._ensure_collection(client)

    @classmethod
    def from_url(cls, spec: StoreSpec, url: str, config: QdrantConfig | None = None) -> QdrantServerStore:
        """A store on the Qdrant server at ``url``, with a client of its own (closed by ``close``)."""
        client = connect(url, config)
        try:
            return cls(spec, client, owns_client=True, config=config)
        except BaseException:
            client.close()
            raise

    # ------------------------------------------------------------------ collection
    def _vector_params(self):
        m, cfg = self._m, self.config
        datatype = m.Datatype.FLOAT16 if self.spec.precision == "float16" else m.Datatype.FLOAT32
        quantization = None
        if cfg.quantization == "int8":
            # always_ram is the spelling every server version understands (newer ones also take memory=PINNED).
            quantization = m.ScalarQuantization(scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, always_ram=True))
        return m.VectorParams(
            size=self.spec.dim,
            distance=m.Distance.COSINE,
            datatype=datatype,
            hnsw_config=m.HnswConfigDiff(m=cfg.hnsw_m, ef_construct=cfg.hnsw_ef_construct),
            quantization_config=quantization,
            on_disk=cfg.on_disk,
            multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM) if self.multivector else None,
        )

    def _ensure_collection(self, client: QdrantClient) -> None:
        """Create the collection if missing; otherwise check it holds vectors of this spec."""
        if not client.collection_exists(self.collection):
            metadata = {STRIDE_METADATA: self.spec.id_stride} if self.spec.id_stride else None
            if self.multivector:
                metadata = {STRIDE_METADATA: self.spec.id_stride, LAYOUT_METADATA: "multivector"}
            try:
                client.create_collection(self.collection, vectors_config=self._vector_params(), metadata=metadata)
            except Exception:
                if not client.collection_exists(self.collection):  # not a lost creation race: a real failure
                    raise
        info = client.get_collection(self.collection)
        params = info.config.params.vectors
        if isinstance(params, dict):
            params = params.get("")
        if params is None:
            raise StoreError(f"store {self.spec.name!r}: collection has no default dense vector")
        held = getattr(params.datatype, "value", params.datatype) or "float32"
        if params.size != self.spec.dim or params.distance != self._m.Distance.COSINE or held != self.spec.precision:
            raise StoreError(
                f"store {self.spec.name!r}: collection holds {params.size}-d {held} {params.distance} vectors, "
                f"expected {self.spec.dim}-d {self.spec.precision} Cosine"
            )
        held_multivector = getattr(params, "multivector_config", None) is not None
        if held_multivector != self.multivector:
            held_layout = "multivector" if held_multivector else "points"
            raise StoreError(f"store {self.spec.name!r}: collection holds the {held_layout} layout; open it with "
                             f"the store of that layout (indexer.stores.open_store picks it)")
        stride = int((info.config.metadata or {}).get(STRIDE_METADATA) or 0)
        if stride and self.spec.id_stride and stride != self.spec.id_stride:
            raise StoreError(f"store {self.spec.name!r}: collection keys ids by image in strides of {stride}, "
                             f"expected {self.spec.id_stride}")
        if self.multivector:
            if stride and stride != self._stride:
                raise StoreError(f"store {self.spec.name!r}: multivector collection keys cells in strides of "
                                 f"{stride}, expected {self._stride}")
            return
        if stride:  # created with the payload: every opener writes it, whatever its spec says
            self._stride, self._delete_by_image = stride, True
            if IMAGE_ID not in (info.payload_schema or {}):  # a creator that stopped before indexing it
                self._index_image_id(client)

    def _index_image_id(self, client: QdrantClient) -> None:
        m = self._m
        with warnings.catch_warnings():  # local mode: "payload indexes have no effect"; a server builds it
            warnings.filterwarnings("ignore", message="Payload indexes have no effect", category=UserWarning)
            client.create_payload_index(self.collection, IMAGE_ID, field_schema=m.IntegerIndexParams(
                type=m.IntegerIndexType.INTEGER, lookup=True, range=False), wait=True)

    # ------------------------------------------------------------------ helpers
    @contextmanager
    def _server(self, action: str) -> Iterator[None]:
        """Turn client and server errors into StoreError naming this store."""
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - transport, HTTP and local-mode errors alike
            raise StoreError(f"store {self.spec.name!r}: Qdrant {action} failed: {exc}") from exc

    def _open_client(self) -> QdrantClient:
        if self._client is None:
            raise StoreError(f"store {self.spec.name!r} is closed")
        return self._client

    def _retrieve(self, client: QdrantClient, ids: np.ndarray, with_vectors: bool) -> list[Any]:
        records: list[Any] = []
        for start in range(0, len(ids), ID_BATCH):
            chunk = ids[start : start + ID_BATCH].tolist()
            records += client.retrieve(self.collection, ids=chunk, with_payload=False, with_vectors=with_vectors)
        return records

    def _count(self, client: QdrantClient, count_filter: Any = None) -> int:
        return int(client.count(self.collection, count_filter=count_filter, exact=True).count)

    def _whole_images(self, ids: np.ndarray) -> np.ndarray | None:
        """The image ids when ``ids`` are every slot of some images (and the collection can delete
        by image), else None. ``ids`` are unique, so n images x stride of them cover those images."""
        if not self._delete_by_image or not len(ids):
            return None
        images = np.unique(ids // self._stride)
        return images if len(ids) == len(images) * self._stride else None

    # ------------------------------------------------------------------ protocol
    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace the vectors for ``ids``, in batches of UPSERT_BATCH points."""
        ids = as_ids(ids, self.spec.name)
        vectors = as_vectors(vectors, self.spec, rows=len(ids))
        with self._lock, self._server("upsert"):
            client = self._open_client()
            for start in range(0, len(ids), UPSERT_BATCH):
                stop = start + UPSERT_BATCH
                chunk = ids[start:stop]
                payloads = [{IMAGE_ID: i} for i in (chunk // self._stride).tolist()] if self._stride else None
                batch = self._m.Batch(ids=chunk.tolist(), vectors=vectors[start:stop].tolist(), payloads=payloads)
                client.upsert(self.collection, points=batch, wait=True)

    def delete(self, ids: np.ndarray) -> int:
        """Remove these ids; returns how many existed. Every slot of some images (what deleting an
        image's patch cells asks for) goes by a filter on the image_id payload."""
        ids = as_ids(ids, self.spec.name)
        m = self._m
        with self._lock, self._server("delete"):
            client = self._open_client()
            images = self._whole_images(ids)
            if images is not None:
                removed = 0
                for start in range(0, len(images), OWNER_BATCH):
                    chosen = m.Filter(must=[m.FieldCondition(
                        key=IMAGE_ID, match=m.MatchAny(any=images[start : start + OWNER_BATCH].tolist()))])
                    found = self._count(client, chosen)
                    if found:
                        client.delete(self.collection, points_selector=m.FilterSelector(filter=chosen), wait=True)
                    removed += found
                return removed
            existing = [int(r.id) for r in self._retrieve(client, ids, with_vectors=False)]
            for start in range(0, len(existing), ID_BATCH):
                selector = self._m.PointIdsList(points=existing[start : start + ID_BATCH])
                client.delete(self.collection, points_selector=selector, wait=True)
            return len(existing)

    def fetch(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors of the ids that exist, in the order asked."""
        ids = as_ids(ids, self.spec.name)
        with self._lock, self._server("fetch"):
            records = self._retrieve(self._open_client(), ids, with_vectors=True)
        return in_request_order(self.spec, ids, {int(r.id): _dense(r.vector) for r in records})

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """The ``k`` highest-scoring stored vectors for each query row (quantised, then rescored)."""
        queries = as_vectors(queries, self.spec)
        result = empty_result(self.spec, len(queries), k)
        ids, scores = result.ids, result.scores
        m = self._m
        params = m.SearchParams(quantization=m.QuantizationSearchParams(rescore=True))
        with self._lock, self._server("search"):
            client = self._open_client()
            limit = min(k, self._count(client))
            if not limit or not len(queries):
                return SearchResult(ids, scores)
            for start in range(0, len(queries), QUERY_BATCH):
                requests = [
                    m.QueryRequest(query=q.tolist(), limit=limit, params=params, with_payload=False, with_vector=False)
                    for q in queries[start : start + QUERY_BATCH]
                ]
                responses = client.query_batch_points(self.collection, requests=requests)
                for row, response in enumerate(responses, start=start):
                    hits = response.points
                    ids[row, : len(hits)] = [int(h.id) for h in hits]
                    scores[row, : len(hits)] = [h.score for h in hits]
        return SearchResult(ids, scores)

    def range_search(self, queries: np.ndarray, threshold: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, every stored (id, score) with score >= ``threshold``, best first."""
        queries = as_vectors(queries, self.spec)
        with self._lock, self._server("range search"):
            client = self._open_client()
            total = self._count(client)
            return [self._range_one(client, q, float(threshold), total) for q in queries]

    def _range_one(self, client: QdrantClient, query: np.ndarray, threshold: float, total: int) -> tuple[np.ndarray, np.ndarray]:
        """One query's hits: ask for a page, and ask again for more while the page came back full."""
        if not total:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        m = self._m
        if self.exact_range:  # full scan over the stored vectors: quantised scores could drop borderline hits
            params = m.SearchParams(exact=True, quantization=m.QuantizationSearchParams(ignore=True))
        else:
            params = m.SearchParams(quantization=m.QuantizationSearchParams(rescore=True))
        vector = query.tolist()
        return widening_range(
            lambda limit: client.query_points(
                self.collection, query=vector, limit=limit, score_threshold=threshold - THRESHOLD_SLACK,
                search_params=params, with_payload=False, with_vectors=False).points,
            total, threshold, RANGE_FIRST_LIMIT)

    def scroll(self, batch_size: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every stored vector in id order, a page of ``batch_size`` points at a time."""
        check_batch_size(self.spec, batch_size)
        offset = None
        while True:
            with self._lock, self._server("scroll"):
                records, offset = self._open_client().scroll(
                    self.collection, limit=batch_size, offset=offset, with_payload=False, with_vectors=True)
            if records:
                ids = np.array([int(r.id) for r in records], dtype=np.int64)
                vectors = np.array([_dense(r.vector) for r in records], dtype=np.float32).reshape(len(ids), self.spec.dim)
                yield ids, vectors
            if offset is None:
                return

    def count(self) -> int:
        """How many vectors are stored (exact)."""
        with self._lock, self._server("count"):
            return self._count(self._open_client())

    def persist(self) -> None:
        """Nothing to do beyond checking the store is open: every write waits for the server's WAL
        (``wait=True``), and local mode writes each point to its file as it goes."""
        with self._lock:
            self._open_client()

    def close(self) -> None:
        """Release the store; closes the client too when the store owns it. Later calls raise StoreError."""
        with self._lock:
            if self._client is None:
                return
            client, self._client = self._client, None
            if self.owns_client:
                with self._server("close"):
                    client.close()


class QdrantMultivectorStore(QdrantServerStore):
    """Patch cells in the multivector layout: one point per image (point id = image id) whose vector
    is the image's cells, compared with Qdrant's MAX_SIM (a query of several cells scores an image by
    the sum, over the query cells, of each one's best cell in the image), with the same HNSW and
    quantisation settings as every other collection. A ``SLOTS`` payload gives each row's slot.

    It still serves the ``VectorStore`` protocol in cell ids (image id x stride + slot), so every
    caller that writes, reads, backs up or restores patch cells works unchanged: an upsert or delete
    of some cells rewrites their images' points (read, merge by slot, write back, so a restore that
    brings an image's cells in two batches keeps both); ``search`` of single cells asks
    for the k images whose best cell is nearest (the images of the k nearest cells are among them)
    and ranks their cells; ``count`` reads every point's slot list (a scan of payloads, no vectors).
    Two processes writing different cells of one image at the same moment could lose one write;
    the indexer writes an image's cells at once, from the one task that embeds it.

    What the layout is for: ``search_images``, the images nearest to a set of query cells by MAX_SIM
    in one request (region queries' candidates, instead of votes of each cell's nearest cells).
    """

    multivector = True

    def __init__(self, spec: StoreSpec, client: QdrantClient, **kwargs: Any) -> None:
        if not spec.id_stride:
            raise StoreError(f"store {spec.name!r}: the multivector layout needs ids keyed by image (an id stride)")
        super().__init__(spec, client, **kwargs)

    # ------------------------------------------------------------------ points <-> cells
    def _split(self, ids: np.ndarray) -> dict[int, np.ndarray]:
        """Cell ids → {image id: positions in ``ids``}."""
        images = ids // self._stride
        order = np.argsort(images, kind="stable")
        unique, starts = np.unique(images[order], return_index=True)
        return dict(zip(unique.tolist(), np.split(order, starts[1:])))

    def _load(self, client: QdrantClient, images: list[int], with_vectors: bool) -> dict[int, dict[int, Any]]:
        """The stored grids of these images: {image id: {slot: row vector (or None)}}."""
        grids: dict[int, dict[int, Any]] = {}
        for start in range(0, len(images), ID_BATCH):
            for r in client.retrieve(self.collection, ids=images[start : start + ID_BATCH], with_payload=[SLOTS],
                                     with_vectors=with_vectors):
                slots = (r.payload or {}).get(SLOTS) or []
                rows = _dense(r.vector) if with_vectors else [None] * len(slots)
                grids[int(r.id)] = dict(zip(slots, rows))
        return grids

    def _write(self, client: QdrantClient, grids: dict[int, dict[int, Any]]) -> None:
        """Store these grids (an empty one deletes its image's point); rows kept in slot order."""
        m = self._m
        empty = [img for img, cells in grids.items() if not cells]
        if empty:
            client.delete(self.collection, points_selector=m.PointIdsList(points=empty), wait=True)
        full = [img for img, cells in grids.items() if cells]
        per_request = max(1, UPSERT_BATCH // self._stride)
        for start in range(0, len(full), per_request):
            chunk = full[start : start + per_request]
            slots = [sorted(grids[img]) for img in chunk]
            vectors = [[_as_list(grids[img][s]) for s in order] for img, order in zip(chunk, slots)]
            client.upsert(self.collection, points=m.Batch(ids=chunk, vectors=vectors,
                                                          payloads=[{SLOTS: order} for order in slots]), wait=True)

    # ------------------------------------------------------------------ protocol
    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace these cells; other cells of their images stay as they were."""
        ids = as_ids(ids, self.spec.name)
        vectors = as_vectors(vectors, self.spec, rows=len(ids))
        with self._lock, self._server("upsert"):
            client = self._open_client()
            by_image = self._split(ids)
            grids = self._load(client, list(by_image), with_vectors=True)
            for img, rows in by_image.items():
                cells = grids.setdefault(img, {})
                cells.update(zip((ids[rows] % self._stride).tolist(), vectors[rows]))
            self._write(client, grids)

    def delete(self, ids: np.ndarray) -> int:
        """Remove these cells; returns how many existed. Every cell of an image goes with its point."""
        ids = as_ids(ids, self.spec.name)
        with self._lock, self._server("delete"):
            client = self._open_client()
            by_image = self._split(ids)
            held = self._load(client, list(by_image), with_vectors=False)
            removed, whole, partial = 0, [], []
            for img, cells in held.items():
                gone = set((ids[by_image[img]] % self._stride).tolist()) & set(cells)
                removed += len(gone)
                if len(gone) == len(cells):
                    whole.append(img)
                elif gone:
                    partial.append((img, gone))
            grids: dict[int, dict[int, Any]] = {img: {} for img in whole}
            if partial:
                kept = self._load(client, [img for img, _ in partial], with_vectors=True)
                for img, gone in partial:
                    grids[img] = {s: v for s, v in kept.get(img, {}).items() if s not in gone}
            self._write(client, grids)
            return removed

    def fetch(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors of the cells that exist, in the order asked."""
        ids = as_ids(ids, self.spec.name)
        with self._lock, self._server("fetch"):
            grids = self._load(self._open_client(), list(self._split(ids)), with_vectors=True)
        by_id = {img * self._stride + s: v for img, cells in grids.items() for s, v in cells.items()}
        return in_request_order(self.spec, ids, by_id)

    def _cells(self, points: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Every cell of some scored/retrieved points: (cell ids, (n, dim) float32)."""
        ids: list[int] = []
        rows: list[Any] = []
        for p in points:
            slots = (p.payload or {}).get(SLOTS) or []
            ids += [int(p.id) * self._stride + s for s in slots]
            rows += _dense(p.vector)
        return np.array(ids, dtype=np.int64), np.array(rows, dtype=np.float32).reshape(len(ids), self.spec.dim)

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """The ``k`` nearest cells to each query row: the k images whose best cell is nearest (by
        MAX_SIM of a one-cell query) hold them; their cells are ranked here."""
        queries = as_vectors(queries, self.spec)
        result = empty_result(self.spec, len(queries), k)
        ids, scores = result.ids, result.scores
        m = self._m
        params = m.SearchParams(quantization=m.QuantizationSearchParams(rescore=True))
        with self._lock, self._server("search"):
            client = self._open_client()
            for start in range(0, len(queries), QUERY_BATCH):
                batch = queries[start : start + QUERY_BATCH]
                requests = [m.QueryRequest(query=[q.tolist()], limit=k, params=params, with_payload=[SLOTS],
                                           with_vector=True) for q in batch]
                for row, response in enumerate(client.query_batch_points(self.collection, requests=requests),
                                               start=start):
                    cell_ids, cells = self._cells(response.points)
                    sims = cells @ queries[row] if len(cell_ids) else np.empty(0, dtype=np.float32)
                    order = np.argsort(-sims, kind="stable")[:k]
                    ids[row, : len(order)] = cell_ids[order]
                    scores[row, : len(order)] = sims[order]
        return SearchResult(ids, scores)

    def _range_one(self, client: QdrantClient, query: np.ndarray, threshold: float, total: int) -> tuple[np.ndarray, np.ndarray]:
        """One query's cells at or above ``threshold``: the images whose best cell reaches it (pages
        widened while full, as for points), their cells filtered here."""
        empty = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
        images = total  # range_search counted the points: one per image
        if not images:
            return empty
        m = self._m
        if self.exact_range:
            params = m.SearchParams(exact=True, quantization=m.QuantizationSearchParams(ignore=True))
        else:
            params = m.SearchParams(quantization=m.QuantizationSearchParams(rescore=True))
        limit = min(RANGE_FIRST_LIMIT, images)
        while True:
            points = client.query_points(self.collection, query=[query.tolist()], limit=limit,
                                         score_threshold=threshold - THRESHOLD_SLACK, search_params=params,
                                         with_payload=[SLOTS], with_vectors=True).points
            if len(points) < limit or limit >= images:
                break
            limit = min(limit * 4, images)
        cell_ids, cells = self._cells(points)
        if not len(cell_ids):
            return empty
        sims = cells @ query
        keep = sims >= np.float32(threshold)
        cell_ids, sims = cell_ids[keep], sims[keep]
        order = np.argsort(-sims, kind="stable")
        return cell_ids[order], sims[order].astype(np.float32)

    def scroll(self, batch_size: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every stored cell in id order (images ascending, slots ascending), at most ``batch_size`` a batch."""
        check_batch_size(self.spec, batch_size)
        offset = None
        while True:
            with self._lock, self._server("scroll"):
                records, offset = self._open_client().scroll(
                    self.collection, limit=max(1, batch_size // self._stride), offset=offset, with_payload=[SLOTS],
                    with_vectors=True)
            ids, vectors = self._cells(records)
            for start in range(0, len(ids), batch_size):
                yield ids[start : start + batch_size], vectors[start : start + batch_size]
            if offset is None:
                return

    def count(self) -> int:
        """How many cells are stored: the lengths of every point's slot list (a payload scan)."""
        total, offset = 0, None
        with self._lock, self._server("count"):
            client = self._open_client()
            while True:
                records, offset = client.scroll(self.collection, limit=ID_BATCH * 4, offset=offset,
                                                with_payload=[SLOTS], with_vectors=False)
                total += sum(len((r.payload or {}).get(SLOTS) or []) for r in records)
                if offset is None:
                    return total

    def search_images(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` images nearest to the set of cells ``queries`` (n, dim), best first, by MAX_SIM:
        per image, the sum over query rows of the row's best cosine among the image's cells."""
        queries = as_vectors(queries, self.spec)
        if k <= 0:
            raise StoreError(f"store {self.spec.name!r}: k must be positive, got {k}")
        m = self._m
        params = m.SearchParams(quantization=m.QuantizationSearchParams(rescore=True))
        if not len(queries):
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        with self._lock, self._server("search"):
            points = self._open_client().query_points(self.collection, query=queries.tolist(), limit=k,
                                                      search_params=params, with_payload=False,
                                                      with_vectors=False).points
        return (np.array([int(p.id) for p in points], dtype=np.int64),
                np.array([p.score for p in points], dtype=np.float32))


def _as_list(row: Any) -> list[float]:
    return row.tolist() if isinstance(row, np.ndarray) else list(row)
