"""Search at the scale of a real library: verified search by picture, search by id over HTTP, and
region queries, on a library made by bench/scan.py (photos-1k and N edited copies of each).

    .venv/bin/python bench/scan.py --copies 99 --library /tmp/scan100k     # 100,000 pictures, then
    .venv/bin/python bench/scale.py --library /tmp/scan100k

Queries are made fresh (none is indexed): ``--queries`` strong edits (bench/edits.py's families) of
random photos, searched in this process, warm, with verification (the default); a query counts as
found when the first result is its photo or one of that photo's indexed copies. Searches by id of
random indexed pictures go to ``dinoseek serve`` (gunicorn, 2 workers x 4 threads) from one client
on the same machine. Region queries: a region of 10-25% of a random photo pasted onto a picture
the library does not hold (bench/regions.py's ``make_query``), found when the photo or a copy of
it is among the first 10.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))  # edits.py (after the repo: bench/api.py is no package)

import edits  # noqa: E402

from dinoseek.settings import load_settings  # noqa: E402
from indexer.catalog.models import Image as Row  # noqa: E402
from indexer.library import Library  # noqa: E402
from indexer.query import search_picture  # noqa: E402
from indexer.query.regions import RegionQuery, search_region  # noqa: E402
from indexer.query.search import QueryPicture, read_query  # noqa: E402


def _bench_module(name: str):
    """A bench script as a module (bench/api.py and bench/regions.py share names with packages)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def source(path: str) -> str:
    return Path(path).name.split("__")[0].rsplit(".", 1)[0]


def query_picture(library: Library, picture: Image.Image, folder: Path) -> QueryPicture:
    """The query saved as a PNG and read as a query file (``dinoseek search`` reads it so)."""
    path = folder / "query.png"
    picture.save(path)
    return read_query(library, path)


def by_picture(library: Library, photos: list[Path], queries: int, rng: random.Random) -> tuple[list[float], float]:
    latencies, found = [], 0
    for q in range(queries + 5):
        photo = rng.choice(photos)
        family = rng.choice(edits.STRONG)
        query = query_picture(library, getattr(edits, family)(Image.open(photo).convert("RGB"), rng).convert("RGB"),
                              library.settings.home)
        started = time.perf_counter()
        hits = search_picture(library, "bench", query, k=10)
        if q >= 5:  # the first ones warm the process up
            latencies.append(time.perf_counter() - started)
            found += bool(hits) and source(hits[0].path) == photo.stem
    return latencies, found / queries


def regions(library: Library, photos: list[Path], queries: int, rng: random.Random) -> tuple[list[float], float]:
    import skimage.data

    make_query = _bench_module("regions").make_query
    backgrounds = [Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in ("coffee", "chelsea", "astronaut")]
    latencies, found = [], 0
    for q in range(queries + 3):
        photo = rng.choice(photos)
        composite, box, _ = make_query(rng, Image.open(photo).convert("RGB"), rng.choice(backgrounds))
        started = time.perf_counter()
        hits = search_region(library, "bench", RegionQuery(composite, box), k=10)
        if q >= 3:
            latencies.append(time.perf_counter() - started)
            found += any(source(h.path) == photo.stem for h in hits)
    return latencies, found / queries


def by_id_over_http(root: Path, settings, ids: list[int], requests: int) -> list[float]:
    api = _bench_module("api")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DINOSEEK_")}
    env.update(DINOSEEK_HOME=str(settings.home), DINOSEEK_API_KEYS=api.KEY, DINOSEEK_DATABASE_URL=settings.database_url,
               DINOSEEK_VECTOR_BACKEND="faiss")
    with api.running_server(env, 8766, 2, log=root / "serve.log", timeout=300, ready=(200, 503)) as base:
        latencies, _ = api.load(base, requests, 1, lambda c, i: c.post(
            "/collections/bench/search", json={"image_id": ids[i % len(ids)], "k": 10}))
    return latencies


def report(name: str, latencies: list[float], extra: str = "") -> None:
    ms = 1000 * np.array(latencies)
    print(f"  {name:34s} p50 {np.percentile(ms, 50):7.1f} ms  p99 {np.percentile(ms, 99):7.1f} ms  "
          f"({len(ms)} queries){extra}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, required=True, help="a library made by bench/scan.py --library")
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared/data/photos-1k")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--region-queries", type=int, default=60)
    parser.add_argument("--http-requests", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = args.library
    settings = replace(load_settings(), home=root / "home", database_url=f"sqlite:///{root}/c.db",
                       vector_backend="faiss", model=None)
    rng = random.Random(args.seed)
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    library = Library(settings)
    with library.catalog.session() as s:
        ids = list(s.scalars(select(Row.id).where(Row.status == "indexed")))
    print(f"{len(ids):,} indexed pictures in {root}", flush=True)
    if args.queries:  # each part is skipped with a count of 0
        latencies, recall = by_picture(library, photos, args.queries, rng)
        report("search by picture, verified", latencies, f", its photo or a copy first: {recall:.3f}")
    if args.region_queries:
        latencies, recall = regions(library, photos, args.region_queries, rng)
        report("region query", latencies, f", its photo or a copy in the top 10: {recall:.3f}")
    library.close()
    if args.http_requests:
        sample = rng.sample(ids, min(1000, len(ids)))
        report("search by id over HTTP, 1 client", by_id_over_http(root, settings, sample, args.http_requests))


if __name__ == "__main__":
    main()
