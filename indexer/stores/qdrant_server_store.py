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

The same code serves a real server (``connect``) and qdrant-client's local mode
(``QdrantClient(path=...)``), which records but ignores HNSW, quantisation, on-disk and payload
index settings and searches by brute force.
"""

from __future__ import annotations

import ssl
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from dinoseek.settings import QDRANT_PATCH_LAYOUTS as PATCH_LAYOUTS
from dinoseek.settings import QDRANT_QUANTIZATIONS as QUANTIZATIONS
from indexer.stores.base import (
    SearchResult,
    StoreError,
    StoreSpec,
    VectorStore,
    as_ids,
    as_vectors,
    check_batch_size,
    empty_result,
    in_request_order,
    widening_range,
)

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from dinoseek.settings import Settings

UPSERT_BATCH = 512  # points per upsert request
QUERY_BATCH = 64  # queries per query_batch_points request
ID_BATCH = 1024  # ids per retrieve/delete request
RANGE_FIRST_LIMIT = 256  # range_search asks for this many hits first and widens while the page is full
THRESHOLD_SLACK = 1e-6  # Qdrant keeps score > threshold; we ask a little lower and keep >= ourselves
IMAGE_ID = "image_id"  # the payload key (and payload index) holding id // id_stride
STRIDE_METADATA = "dinoseek_image_id_stride"  # collection metadata: every point carries IMAGE_ID
OWNER_BATCH = 1024  # image ids per filtered count/delete request
LAYOUT_METADATA = "dinoseek_patch_layout"  # collection metadata of a multivector patch store
SLOTS = "slots"  # multivector layout: payload listing the slot (id % stride) of each row of the multivector


@dataclass(frozen=True)
class QdrantConfig:
    """How dinoseek talks to a Qdrant server and lays out the collections it creates there
    (``DINOSEEK_QDRANT_API_KEY``, ``_CA_FILE``, ``_HNSW_M``, ``_HNSW_EF_CONSTRUCT``, ``_QUANTIZATION``, ``_ON_DISK``)."""

    api_key: str | None = None
    ca_file: str | None = None  # PEM CA an https:// server's certificate must chain to; None: the default trust store
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
        return (f"QdrantConfig(api_key={key}, ca_file={self.ca_file!r}, hnsw_m={self.hnsw_m}, "
                f"hnsw_ef_construct={self.hnsw_ef_construct}, quantization={self.quantization!r}, "
                f"on_disk={self.on_disk}, patch_layout={self.patch_layout!r})")

    @classmethod
    def from_settings(cls, settings: Settings) -> QdrantConfig:
        """The configuration the ``DINOSEEK_QDRANT_*`` settings describe: the one place settings become a config."""
        return cls(api_key=settings.qdrant_api_key, ca_file=settings.qdrant_ca_file, hnsw_m=settings.qdrant_hnsw_m,
                   hnsw_ef_construct=settings.qdrant_hnsw_ef_construct, quantization=settings.qdrant_quantization,
                   on_disk=settings.qdrant_on_disk, patch_layout=settings.qdrant_patch_layout)


def connect(url: str, config: QdrantConfig | None = None, **kwargs: Any) -> QdrantClient:
    """A client for the Qdrant server at ``url``, with the configured API key and, for a private CA,
    TLS verified against that CA alone (every client the product makes comes from here: stores,
    dropping stores, health checks)."""
    from qdrant_client import QdrantClient  # imported lazily: only this backend needs qdrant-client

    config = config or QdrantConfig()
    if config.ca_file:
        if urlsplit(url).scheme != "https":
            raise StoreError(f"DINOSEEK_QDRANT_CA_FILE is set but the Qdrant URL {url!r} is not https://")
        # qdrant-client hands unknown keyword arguments to its httpx client: `verify` takes an SSL context.
        kwargs.setdefault("verify", ca_context(config.ca_file))
        # Its version check makes a request of its own that ignores `verify`: it would fail, and warn, every time.
        kwargs.setdefault("check_compatibility", False)
    return QdrantClient(url=url, api_key=config.api_key, **kwargs)


def ca_context(ca_file: str) -> ssl.SSLContext:
    """A client SSL context that trusts only the CA certificates in ``ca_file`` (hostnames checked)."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise StoreError(f"DINOSEEK_QDRANT_CA_FILE: cannot load a CA certificate from {ca_file} "
                         f"({getattr(exc, 'strerror', None) or exc})") from exc


def _models():
    from qdrant_client import models  # imported lazily: only this backend needs qdrant-client

    return models


def dense_vector(vector: Any) -> list[float]:
    """The default (unnamed) dense vector of a record, whichever shape the client returns."""
    if isinstance(vector, dict):
        vector = vector[""]
    return vector


class QdrantServerStore(VectorStore):
    """A Qdrant collection holding one named set of vectors."""


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
            multivector_config=(m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM)
                                if self.patch_layout == "multivector" else None),
        )

    def _ensure_collection(self, client: QdrantClient) -> None:
        """Create the collection if missing; otherwise check it holds vectors of this spec."""
        if not client.collection_exists(self.collection):
            metadata = {STRIDE_METADATA: self.spec.id_stride} if self.spec.id_stride else None
            if self.patch_layout == "multivector":
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
        if held_multivector != (self.patch_layout == "multivector"):
            held_layout = "multivector" if held_multivector else "points"
            raise StoreError(f"store {self.spec.name!r}: collection holds the {held_layout} layout; open it with "
                             f"the store of that layout (indexer.stores.open_store picks it)")
        stride = int((info.config.metadata or {}).get(STRIDE_METADATA) or 0)
        if stride and self.spec.id_stride and stride != self.spec.id_stride:
            raise StoreError(f"store {self.spec.name!r}: collection keys ids by image in strides of {stride}, "
                             f"expected {self.spec.id_stride}")
        if self.patch_layout == "multivector":
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

    def _rescoring(self):
        """Search parameters of every top-k query: quantised candidates rescored with the stored vectors."""
        return self._m.SearchParams(quantization=self._m.QuantizationSearchParams(rescore=True))

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
        return in_request_order(self.spec, ids, {int(r.id): dense_vector(r.vector) for r in records})

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """The ``k`` highest-scoring stored vectors for each query row (quantised, then rescored)."""
        queries = as_vectors(queries, self.spec)
        result = empty_result(self.spec, len(queries), k)
        ids, scores = result.ids, result.scores
        m = self._m
        params = self._rescoring()
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
            params = self._rescoring()
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
                vectors = np.array([dense_vector(r.vector) for r in records], dtype=np.float32).reshape(len(ids), self.spec.dim)
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


def as_list(row: Any) -> list[float]:
    return row.tolist() if isinstance(row, np.ndarray) else list(row)
