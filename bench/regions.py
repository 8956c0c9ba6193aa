"""Region queries: recall@1/@10 and the IoU of the matched box, against a whole-crop baseline.

Indexes ``--library`` real photos. Each query cuts a region of 10-25% of the area from one indexed
photo (its source), resizes it by 0.7-1.3x and pastes it at a random place onto another photo that
is not indexed; the query is that composite with the box where the region was pasted. A query is
found at rank r when its source is the r-th hit; the IoU compares the hit's matched box with the
region's true place in the source. The baseline embeds the pasted region as a whole picture and
searches the global index (no box comes back, so no IoU).

    .venv/bin/python bench/regions.py --library 300 --queries 120
    .venv/bin/python bench/regions.py --backend qdrant-local-multivector   # patch candidates by MAX_SIM

``--backend`` picks where the vectors live: FAISS files (default), or the Qdrant server store run in
qdrant-client's local mode (in memory, brute force: no HNSW, no quantisation) with the patch cells as
points (``qdrant-local``: candidates by votes, as with FAISS) or as one multivector per image
(``qdrant-local-multivector``: candidates by MAX_SIM). Local-mode times are not a server's.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dinoseek.settings import load_settings  # noqa: E402
from indexer.jobs import index_paths  # noqa: E402
from indexer.library import Library  # noqa: E402
from indexer.query.regions import RegionQuery, search_region  # noqa: E402
from indexer.query.search import search_vectors  # noqa: E402
from model.files import iter_image_paths  # noqa: E402


def iou(a: list[int], b: list[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def make_query(rng: random.Random, source: Image.Image, background: Image.Image) -> tuple[Image.Image, list[int], list[int]]:
    """(composite, box in the composite, true box in the source)."""
    area = rng.uniform(0.10, 0.25)
    aspect = rng.uniform(0.6, 1.6)
    w = min(source.width, int(round((area * source.width * source.height * aspect) ** 0.5)))
    h = min(source.height, int(round(area * source.width * source.height / max(w, 1))))
    x0, y0 = rng.randint(0, source.width - w), rng.randint(0, source.height - h)
    region = source.crop((x0, y0, x0 + w, y0 + h))
    scale = rng.uniform(0.7, 1.3)
    pw = max(8, min(background.width - 1, int(w * scale)))
    ph = max(8, min(background.height - 1, int(h * scale)))
    region = region.resize((pw, ph), Image.Resampling.BICUBIC)
    px, py = rng.randint(0, background.width - pw), rng.randint(0, background.height - ph)
    composite = background.copy()
    composite.paste(region, (px, py))
    return composite, [px, py, px + pw, py + ph], [x0, y0, x0 + w, y0 + h]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared/data/photos-1k")
    parser.add_argument("--model", help="checkpoint (default: DINOSEEK_MODEL, then the shipped model)")
    parser.add_argument("--library", type=int, default=300)
    parser.add_argument("--queries", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=("faiss", "qdrant-local", "qdrant-local-multivector"), default="faiss")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    files = sorted(iter_image_paths([args.photos]))
    rng.shuffle(files)
    indexed, backgrounds = files[:args.library], files[args.library:]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "lib"
        folder.mkdir()
        for f in indexed:
            (folder / f.name).symlink_to(f.resolve())
        settings = replace(load_settings(), home=Path(tmp) / "home", database_url=f"sqlite:///{tmp}/c.db",
                           vector_backend="faiss", model=args.model or load_settings().model)
        if args.backend != "faiss":
            _local_qdrant()
            settings = replace(settings, vector_backend="qdrant", qdrant_url="http://local.invalid:6333",
                               qdrant_patch_layout="multivector" if args.backend.endswith("multivector") else "points")
        library = Library(settings)
        candidate_times = _timepatch_candidates()
        started = time.perf_counter()
        index_paths(library, "bench", [folder], follow_symlinks=True)
        index_seconds = time.perf_counter() - started
        ids = {Path(p).name: i for i, p in _paths(library)}
        ranks, ious, base_ranks, times = [], [], [], []
        for _ in range(args.queries):
            source_path = rng.choice(indexed)
            source = Image.open(source_path).convert("RGB")
            background = Image.open(rng.choice(backgrounds)).convert("RGB")
            composite, box, truth = make_query(rng, source, background)
            target = ids[source_path.name]
            started = time.perf_counter()
            hits = search_region(library, "bench", RegionQuery(composite, box), k=10)
            times.append(time.perf_counter() - started)
            found = [h.image_id for h in hits]
            rank = found.index(target) + 1 if target in found else None
            ranks.append(rank)
            if rank is not None:
                ious.append(iou(hits[rank - 1].box, truth))
            crop_vector = library.embedder.embed([composite.crop(tuple(box))]).vectors
            base = [h.image_id for h in search_vectors(library, "bench", crop_vector, 10)[0]]
            base_ranks.append(base.index(target) + 1 if target in base else None)
        library.close()

    def recall(rs, k):
        return sum(1 for r in rs if r is not None and r <= k) / len(rs)

    print(f"{args.queries} region queries (10-25% of a photo, resized 0.7-1.3x, pasted on an unindexed photo), "
          f"{args.library} indexed photos, vectors in {args.backend} (indexed in {index_seconds:.1f} s):")
    print(f"  patch re-ranking     recall@1 {recall(ranks, 1):.3f}  recall@10 {recall(ranks, 10):.3f}  "
          f"mean IoU of the matched box {np.mean(ious) if ious else 0:.3f} (IoU>=0.5: "
          f"{np.mean([i >= 0.5 for i in ious]) if ious else 0:.2f} of found)  median {1000 * np.median(times):.0f} ms/query "
          f"(patch candidates: median {1000 * np.median(candidate_times):.1f} ms)")
    print(f"  whole-crop baseline  recall@1 {recall(base_ranks, 1):.3f}  recall@10 {recall(base_ranks, 10):.3f}")


def _timepatch_candidates() -> list[float]:
    """Seconds each region query spent getting its patch candidates (votes, or MAX_SIM)."""
    import indexer.query.regions as regions

    spent: list[float] = []
    inner = regions.patch_candidates

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    regions.patch_candidates = timed
    return spent


def _local_qdrant() -> None:
    """Every Qdrant client the product makes becomes one qdrant-client local-mode instance in memory
    (the stores' own code and collection settings, without a server)."""
    import warnings

    from qdrant_client import QdrantClient

    import indexer.stores.qdrant_server_store as qss

    warnings.filterwarnings("ignore", message="Local mode performs exact", category=UserWarning)
    client = QdrantClient(location=":memory:")

    class Shared:  # the stores close their client; this one serves them all
        def __getattr__(self, name):
            return getattr(client, name)

        def close(self) -> None:
            pass

    qss.connect = lambda url, config=None, **kwargs: Shared()


def _paths(library: Library):
    from sqlalchemy import select

    from indexer.catalog.models import Image as Row

    with library.catalog.session() as s:
        return s.execute(select(Row.id, Row.path)).all()


if __name__ == "__main__":
    main()
