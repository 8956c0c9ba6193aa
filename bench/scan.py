"""The duplicate scan at photos-1k scale: its wall time, whether it reads image files, and its groups.

Indexes the photos (and, with ``--copies N``, N edited copies of each, from bench/edits.py's
families, drawn at random) into a fresh embedded library with the shipped model, then times
``find_duplicates``, counting the image files it reads (none, once local features are stored). With
copies, checks that every copy lies in its photo's near group and that no group holds two
different photos; without, lists what was grouped (unrelated photos should not be).

    .venv/bin/python bench/scan.py --photos ../shared/data/photos-1k [--copies 2]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import edits  # noqa: E402

from dinoseek.settings import load_settings  # noqa: E402
from indexer.duplicates import find_duplicates, judging  # noqa: E402
from indexer.jobs import index_paths  # noqa: E402
from indexer.library import Library  # noqa: E402
from model.files import iter_image_paths  # noqa: E402


def _counting_reads(counter: list[int]) -> None:
    """Count the image files the scan reads (its only way to a file is judging.read_image)."""
    real = judging.read_image

    def counted(*args, **kwargs):
        counter[0] += 1
        return real(*args, **kwargs)

    judging.read_image = counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/photos-1k")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--copies", type=int, default=0, help="edited copies of each photo to add")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    families = edits.MILD + edits.STRONG
    files = list(iter_image_paths([args.photos]))[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "lib"
        folder.mkdir()
        source_of: dict[str, str] = {}
        for f in files:
            (folder / f.name).symlink_to(f)
            source_of[f.name] = f.stem
            picture = Image.open(f).convert("RGB")
            for n in range(args.copies):
                family = rng.choice(families)
                name = f"{f.stem}__{family}{n}.jpg"
                getattr(edits, family)(picture, rng).convert("RGB").save(folder / name, quality=85)
                source_of[name] = f.stem
        settings = replace(load_settings(), home=Path(tmp) / "home", database_url=f"sqlite:///{tmp}/c.db",
                           vector_backend="faiss", model=None)
        library = Library(settings)
        started = time.perf_counter()
        report = index_paths(library, "bench", [folder], follow_symlinks=True)
        indexed_s = time.perf_counter() - started
        opened = [0]
        _counting_reads(opened)
        started = time.perf_counter()
        groups = find_duplicates(library, "bench")
        scan_s = time.perf_counter() - started
        library.close()
    by_kind: dict[str, list] = {"exact": [], "near": [], "similar": []}
    for g in groups:
        by_kind[g.kind].append(sorted(Path(p).name for p in g.paths))
    print(f"{report.indexed} images indexed in {indexed_s:.1f} s ({len(files)} photos, {args.copies} copies each)")
    print(f"scan: {scan_s:.1f} s, image files read during the scan: {opened[0]}")
    print("groups: " + ", ".join(f"{kind} {len(v)}" for kind, v in by_kind.items()))
    mixed = [g for kind in ("near", "similar") for g in by_kind[kind] if len({source_of[n] for n in g}) > 1]
    print(f"groups holding two different photos: {len(mixed)}")
    for g in mixed[:10]:
        print("  " + ", ".join(g))
    if args.copies:
        near_of = {n: i for i, g in enumerate(by_kind["near"]) for n in g}
        placed = sum(1 for name, src in source_of.items() if "__" in name
                     and near_of.get(name) is not None and near_of.get(f"{src}.JPEG", near_of.get(f"{src}.jpg"))
                     == near_of[name])
        copies = sum(1 for name in source_of if "__" in name)
        print(f"copies in their photo's near group: {placed}/{copies} ({placed / max(1, copies):.3f})")


if __name__ == "__main__":
    main()
