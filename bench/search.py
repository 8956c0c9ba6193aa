"""Vector-store benchmark: query latency and recall@10 against exact search, and the duplicate scan's graph.

Data: synthetic L2-normalised vectors with the structure of image descriptors rather than uniform
noise (which no ANN index handles and no photo library looks like): cluster centres, members
spread around them, and 2% planted near-duplicates (a member plus small noise). Queries are
fresh members of the same clusters, never stored. Ground truth is exact inner-product search.

    .venv/bin/python bench/search.py --sizes 100000 1000000 --dim 384
    .venv/bin/python bench/search.py --sizes 100000 --backend qdrant-edge
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.stores.base import StoreSpec  # noqa: E402


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_data(n: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stored vectors, queries, the source row of each planted copy; copy j is row n - len(src) + j)."""
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((max(16, n // 50), dim), dtype=np.float32))

    def members(count: int) -> np.ndarray:
        c = centres[rng.integers(0, len(centres), count)]
        return normalise(c + 0.8 * rng.standard_normal((count, dim), dtype=np.float32) / np.sqrt(dim))
    data = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        data[start:start + 100_000] = members(min(100_000, n - start))
    planted = n // 50
    src = rng.choice(n - planted, planted, replace=False)
    data[n - planted:] = normalise(data[src] + 0.25 * rng.standard_normal((planted, dim), dtype=np.float32) / np.sqrt(dim))
    return data, members(queries), src


def open_backend(name: str, spec: StoreSpec, folder: Path):
    if name == "faiss":
        from indexer.stores.faiss_store import FaissStore

        return FaissStore(spec, folder)
    from indexer.stores.qdrant_edge_store import QdrantEdgeStore

    return QdrantEdgeStore(spec, folder)


def exact_top(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatIP(data.shape[1])
    index.add(data)
    return index.search(queries, k)[1]


def patch_votes(n: int, dim: int) -> None:
    """A region query's candidate step at scale: 9 pooled query cells, 200 nearest stored cells
    each, in a float16 patch store of ``n`` cells (64 per image: n / 64 images) of the default
    model's 192 dimensions, HNSW as the product builds it."""
    from indexer.stores.faiss_store import FaissStore

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20_000, dim)).astype(np.float32)

    def cells(count: int) -> np.ndarray:
        x = centres[rng.integers(0, len(centres), count)] + 0.7 * rng.standard_normal((count, dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    with tempfile.TemporaryDirectory() as tmp:
        store = FaissStore(StoreSpec("cells", dim, "float16", id_stride=64), Path(tmp))
        t = time.perf_counter()
        for start in range(0, n, 100_000):
            count = min(100_000, n - start)
            store.upsert(np.arange(start, start + count), cells(count))
        store.persist()
        build = time.perf_counter() - t
        queries = cells(9)
        store.search(queries, 200)
        times = []
        for _ in range(20):
            t = time.perf_counter()
            store.search(queries, 200)
            times.append(time.perf_counter() - t)
        print(f"patch store n={n:,} cells ({n // 64:,} images) build {build:.0f}s: 9 cells x 200 neighbours "
              f"median {1000 * np.median(times):.1f} ms", flush=True)
        store.close()


def scan_only(n: int, dim: int, threshold: float) -> None:
    """The duplicate scan's graph over ``n`` stored vectors (a flat store: nothing to build first)."""
    from indexer.stores.faiss_store import FaissStore

    data, _, sources = make_data(n, dim, 1)
    with tempfile.TemporaryDirectory() as tmp:
        store = FaissStore(StoreSpec("bench", dim), Path(tmp), ann_threshold=n + 1)
        for start in range(0, n, 50_000):
            store.upsert(np.arange(start, min(n, start + 50_000)), data[start:start + 50_000])
        del data
        print(f"{'faiss':12s} n={n:>9,} dim={dim} (flat store)", flush=True)
        scan(store, n, dim, threshold, sources)
        store.close()


def scan(store, n: int, dim: int, threshold: float, sources: np.ndarray) -> None:
    """Time the duplicate scan's candidate graph and count the planted copies it links."""
    from indexer.duplicates.grouping import ApartUnionFind
    from indexer.duplicates.knn_graph import knn_graph
    from indexer.duplicates.scan import NEIGHBOURS

    planted = len(sources)
    t = time.perf_counter()
    graph = knn_graph(store.fetch, list(range(n)), dim, NEIGHBOURS, threshold)
    uf = ApartUnionFind()
    for a, b in zip(graph.a.tolist(), graph.b.tolist()):
        uf.union(a, b)
    elapsed = time.perf_counter() - t
    edges = set(zip(graph.a.tolist(), graph.b.tolist()))
    copies = np.arange(n - planted, n)
    found = sum((min(s, c), max(s, c)) in edges for s, c in zip(sources.tolist(), copies.tolist()))
    groups = len({uf.find(i) for i in uf.parent})
    print(f"{'':12s} duplicate-scan graph ({'inverted file, 8-bit' if graph.approximate else 'exact'}, "
          f"k={NEIGHBOURS}, edges >= {threshold}): {elapsed:7.1f}s, {len(edges):,} edges, {groups:,} groups, "
          f"{found:,} of {planted:,} planted copies linked to their source", flush=True)


def run(n: int, dim: int, backend: str, n_queries: int, threshold: float, ef_sweep: list[int] | None = None) -> None:
    data, queries, sources = make_data(n, dim, n_queries)
    truth = exact_top(data, queries, 10)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_backend(backend, StoreSpec("bench", dim), Path(tmp))
        t0 = time.perf_counter()
        for start in range(0, n, 50_000):
            store.upsert(np.arange(start, min(n, start + 50_000)), data[start:start + 50_000])
        store.persist()
        build = time.perf_counter() - t0
        store.search(queries[:1], 10)  # first query after a write may finish index construction
        lat, found = [], []
        for q in queries:
            t = time.perf_counter()
            res = store.search(q[None, :], 10)
            lat.append(time.perf_counter() - t)
            found.append(res.ids[0])
        recall = np.mean([len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(found, truth)])
        t = time.perf_counter()
        store.search(queries, 10)
        batch_ms = (time.perf_counter() - t) / len(queries) * 1e3
        lat_ms = np.array(lat) * 1e3
        kind = getattr(store, "kind", backend)
        print(f"{backend:12s} n={n:>9,} dim={dim} index={kind:6s} build {build:7.1f}s  "
              f"p50 {np.percentile(lat_ms, 50):.3f} ms  p99 {np.percentile(lat_ms, 99):.3f} ms  "
              f"batched {batch_ms:.3f} ms/query  recall@10 {recall:.4f}", flush=True)
        if ef_sweep and kind == "hnsw":  # the beam-width trade-off, on the raw FAISS graph
            import faiss

            for ef in ef_sweep:
                params = faiss.SearchParametersHNSW()
                params.efSearch = ef
                sweep_lat, sweep_found = [], []
                for q in queries:
                    t = time.perf_counter()
                    sweep_found.append(store._index.search(q[None, :], 10, params=params)[1][0])
                    sweep_lat.append(time.perf_counter() - t)
                sweep_ids = [store._ids[f[f >= 0]] for f in sweep_found]
                sweep_recall = np.mean([len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(sweep_ids, truth)])
                print(f"{'':12s} raw graph efSearch {ef:4d}: p50 {np.percentile(sweep_lat, 50) * 1e3:.3f} ms  "
                      f"recall@10 {sweep_recall:.4f}", flush=True)

        # the duplicate scan's candidate graph, as `dinoseek duplicates` builds it: k nearest others
        # per vector (exact below 100k vectors, an 8-bit inverted file above), edges >= threshold
        scan(store, n, dim, threshold, sources)
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=384, help="descriptor length (the default model's: 384)")
    parser.add_argument("--backend", choices=["faiss", "qdrant-edge"], default="faiss")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--threshold", type=float, default=0.9, help="near-duplicate similarity threshold")
    parser.add_argument("--ef-sweep", type=int, nargs="*", help="also time the raw HNSW graph at these efSearch values")
    parser.add_argument("--scan-only", action="store_true",
                        help="only the duplicate scan's graph, over a flat FAISS store (no HNSW build)")
    parser.add_argument("--patch-votes", action="store_true",
                        help="only a region query's vote search: 9 cells x 200 neighbours in a float16 cell store of N")
    args = parser.parse_args()
    for n in args.sizes:
        if args.patch_votes:
            patch_votes(n, 192)
        elif args.scan_only:
            scan_only(n, args.dim, args.threshold)
        else:
            run(n, args.dim, args.backend, args.queries, args.threshold, args.ef_sweep)


if __name__ == "__main__":
    main()
