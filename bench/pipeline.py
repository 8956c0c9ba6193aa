"""Indexing pipeline throughput: JPEG files → vectors in the index, against the forward pass alone.

Runs `index_paths` (walk, read, hash, probe, decode on threads, preprocess, embed, pool patches,
store both vector sets, commit rows) over a folder of real photos into a fresh embedded library,
then times the model's forward pass alone on the very same preprocessed tensors, same batching.
The ratio says how much of the model's speed survives everything around it (target ≥ 0.8). Each
repeat measures the two side by side and gives one ratio; the median ratio is the figure (shared
machines drift by ±10% within minutes, which best-of-each would mix across repeats).

    .venv/bin/python bench/pipeline.py --photos ../shared/data/photos-1k
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dinoseek.settings import load_settings  # noqa: E402
from indexer.ingest.reading import read_image  # noqa: E402
from indexer.jobs import index_paths  # noqa: E402
from indexer.library import Library  # noqa: E402
from model.files import iter_image_paths  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/photos-1k")
    parser.add_argument("--model", help="checkpoint (default: DINOSEEK_MODEL, then the shipped model)")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--decode-workers", type=int, help="decode threads (default: the embedder's choice for this machine)")
    args = parser.parse_args()
    files = list(iter_image_paths([args.photos]))[: args.limit]

    pipeline_rates, forward_rates = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "lib"
            folder.mkdir()
            for f in files:  # a private copy: every run indexes from scratch
                (folder / f.name).symlink_to(f)
            settings = replace(load_settings(), home=Path(tmp) / "home", database_url=f"sqlite:///{tmp}/c.db",
                               vector_backend="faiss", model=args.model or load_settings().model)
            library = Library(settings)
            emb = library.embedder  # loaded before the clock starts, as in a long-running worker
            t = time.perf_counter()
            report = index_paths(library, "bench", [folder], follow_symlinks=True, workers=args.decode_workers)
            pipeline_rates.append(report.indexed / (time.perf_counter() - t))
            library.close()
            sizes = {f.name: f.stat().st_size for f in (Path(tmp) / "home" / "stores").iterdir()}
            db_bytes = (Path(tmp) / "c.db").stat().st_size

        tensors = [emb.preprocess(read_image(f, target_long_side=emb.image_size).image) for f in files]
        t = time.perf_counter()
        for start in range(0, len(tensors), 4 * emb.batch_size):  # the pipeline's flush size
            emb.embed_tensors(tensors[start:start + 4 * emb.batch_size])
        forward_rates.append(len(tensors) / (time.perf_counter() - t))

    ratios = sorted(p / f for p, f in zip(pipeline_rates, forward_rates))
    median = ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1:][:2]) / 2
    print(f"model {emb.vit.checkpoint_path}: {emb.dim}-d at {emb.image_size} px, batch {emb.batch_size}, "
          f"{len(files)} JPEGs from {args.photos}")
    per_image = {name: size / len(files) for name, size in sizes.items()}
    print("bytes per image on disk: " + ", ".join(f"{name} {b:,.0f}" for name, b in sorted(per_image.items()))
          + f", catalog (SQLite) {db_bytes / len(files):,.0f}")
    print(f"decode threads {args.decode_workers or emb.decode_workers}; "
          f"pipeline (files -> index) img/s {[round(r, 1) for r in pipeline_rates]}, "
          f"forward only img/s {[round(r, 1) for r in forward_rates]}")
    print(f"ratio (median of {args.repeats} side-by-side pairs): {median:.2f}   "
          f"(pairs: {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
