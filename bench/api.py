"""REST API latency: search by id and search by upload against a running gunicorn server.

Builds a collection of ``--size`` catalog rows whose global vectors are random unit vectors
(embedding 100k photos would take hours on a CPU; the index and the catalog are what a search by
id touches), bound to the configured model, then starts ``dinoseek serve`` (gunicorn) on it and
sends requests from one client, then from ``--clients`` concurrent clients (on the same machine,
so they share its cores with the server): searches by random image ids, and searches by uploading
a real photo. Prints p50/p99 latency and requests/s of each, then times, in-process, how
a search by upload splits between decoding the picture, the forward pass and the index + catalog.

    .venv/bin/python bench/api.py --size 100000 --requests 2000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dinoseek.settings import load_settings  # noqa: E402
from indexer.library import Library  # noqa: E402

KEY = "bench-key-0123456789"


def build_collection(settings, size: int) -> None:
    """``size`` indexed rows and random unit vectors in the collection's global store."""
    from sqlalchemy import insert

    from indexer.catalog.models import Image

    library = Library(settings)
    rng = np.random.default_rng(0)
    with library.catalog.session() as s:
        collection = library.get_or_create_collection(s, "bench")
        model = library.bind_model(s, collection)
        collection_id, dim = collection.id, library.embedder.dim
    stores = library.stores("bench", dim, library.embedder.embed_dim)
    for start in range(0, size, 20_000):
        n = min(20_000, size - start)
        with library.catalog.session() as s:
            ids = list(s.scalars(insert(Image).returning(Image.id, sort_by_parameter_order=True), [
                {"collection_id": collection_id, "path": f"/bench/{start + i:07d}.jpg", "status": "indexed",
                 "format": "JPEG", "width": 640, "height": 480, "model_id": model.id} for i in range(n)]))
        vectors = rng.standard_normal((n, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        stores.global_.upsert(np.array(ids), vectors)
    stores.persist()
    library.close()


@contextlib.contextmanager
def running_server(env: dict, port: int, workers: int, log: Path | None = None, timeout: float = 120,
                   ready: tuple[int, ...] = (200,)):
    """``dinoseek serve`` (gunicorn, ``workers`` x 4 threads) on ``port`` with ``env``, once its
    /health answers one of ``ready``: yields the API's base URL, and stops the server after."""
    import httpx

    output = log.open("w") if log else subprocess.DEVNULL
    server = subprocess.Popen([sys.executable, "-m", "dinoseek.cli", "serve", "--port", str(port), "--workers",
                               str(workers), "--threads", "4"], env=env, stdout=output,
                              stderr=subprocess.STDOUT if log else subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code in ready:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server did not start" + (": " + log.read_text()[-2000:] if log else ""))
            time.sleep(0.3)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def load(base: str, requests: int, clients: int, make_request) -> tuple[list[float], float]:
    import httpx

    latencies: list[float] = []

    def one(i: int, client) -> float:
        started = time.perf_counter()
        response = make_request(client, i)
        if response.status_code != 200:
            raise SystemExit(f"request failed: {response.status_code} {response.text[:300]}")
        return time.perf_counter() - started

    per_client = requests // clients
    http = [httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) for _ in range(clients)]
    for c in http:  # warm up each connection and each server process
        for i in range(5):
            one(i, c)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(lambda c=c: [one(i, c) for i in range(per_client)]) for c in http]
        for f in futures:
            latencies.extend(f.result())
    elapsed = time.perf_counter() - started
    for c in http:
        c.close()
    return latencies, len(latencies) / elapsed


def upload_split(settings, photo: bytes, repeats: int) -> dict[str, float]:
    """Median milliseconds of decode, forward pass, and index + catalog for one search by upload."""
    from indexer.ingest.reading import FileStat, decode_bytes
    from indexer.query.search import embed_pictures, search_vectors

    library = Library(settings)
    parts: dict[str, list[float]] = {"decode": [], "forward": [], "index + catalog": []}
    for i in range(repeats + 3):
        t0 = time.perf_counter()
        loaded = decode_bytes("q.jpg", photo, FileStat(len(photo), 0), settings.max_image_pixels,
                              target_long_side=library.embedder.image_size)
        t1 = time.perf_counter()
        vector = embed_pictures(library, [loaded.image])
        t2 = time.perf_counter()
        search_vectors(library, "bench", vector, 10)
        t3 = time.perf_counter()
        if i >= 3:
            for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
                value_ms = 1000 * value
                parts[key].append(value_ms)
    library.close()
    return {k: statistics.median(v) for k, v in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--upload-requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--photo", type=Path, default=ROOT.parent / "shared/data/photos-1k/n01440764_tench.jpg")
    args = parser.parse_args()
    photo = args.photo.read_bytes() if args.photo.exists() else None
    if photo is None:
        from PIL import Image
        from skimage import data

        out = io.BytesIO()
        Image.fromarray(data.coffee()).save(out, "JPEG", quality=90)
        photo = out.getvalue()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        settings = replace(load_settings(), home=home, database_url=f"sqlite:///{home / 'dinoseek.db'}",
                           vector_backend="faiss", broker_url=None, api_keys=(KEY,))
        started = time.perf_counter()
        build_collection(settings, args.size)
        print(f"built {args.size:,} rows + vectors in {time.perf_counter() - started:.0f} s", flush=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DINOSEEK_")}
        env.update(DINOSEEK_HOME=str(home), DINOSEEK_API_KEYS=KEY, DINOSEEK_DATABASE_URL=settings.database_url)
        if settings.model:
            env["DINOSEEK_MODEL"] = settings.model
        with running_server(env, 8765, args.workers) as base:
            rng = np.random.default_rng(1)
            ids = rng.integers(1, args.size + 1, size=args.requests + 100).tolist()
            by_id_one, id_rate_one = load(base, args.requests, 1, lambda c, i: c.post(
                "/collections/bench/search", json={"image_id": ids[i], "k": 10}))
            by_id, id_rate = load(base, args.requests, args.clients,
                                  lambda c, i: c.post("/collections/bench/search", json={"image_id": ids[i], "k": 10}))
            by_upload, upload_rate = load(
                base, args.upload_requests, args.clients,
                lambda c, i: c.post("/collections/bench/search", files={"image": ("q.jpg", photo, "image/jpeg")},
                                    data={"k": "10"}))
        split = upload_split(settings, photo, 30)

    print(f"\n{args.size:,} vectors, gunicorn {args.workers} workers x 4 threads, clients on the same machine:")
    for name, lat, rate in (("search by id, 1 client", by_id_one, id_rate_one),
                            (f"search by id, {args.clients} clients", by_id, id_rate),
                            (f"search by upload, {args.clients} clients", by_upload, upload_rate)):
        print(f"  {name:30s} p50 {1000 * percentile(lat, 50):7.2f} ms  p99 {1000 * percentile(lat, 99):7.2f} ms  "
              f"{rate:7.1f} req/s  ({len(lat)} requests)")
    total = sum(split.values())
    print("  search by upload, in-process split (median of 30): " +
          ", ".join(f"{k} {v:.1f} ms ({v / total:.0%})" for k, v in split.items()))


if __name__ == "__main__":
    main()
