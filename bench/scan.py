"""The duplicate scan on photos-1k and its edits: its wall time, that it reads no image file, and its groups.

Indexes the photos (and, with ``--copies N``, N edited copies of each, from bench/edits.py's
families, drawn at random) into a fresh embedded library with the shipped model, then times
the scan (``find_duplicates``'s stages, each timed) with every indexed file moved out of reach
(it reads none: the stored local features). With copies, checks that every copy lies in its
photo's near group and that no group holds two different photos; without, lists what was
grouped (unrelated photos should not be). ``--copies 99`` makes the 100,000-picture library.

    .venv/bin/python bench/scan.py --photos ../shared/data/photos-1k [--copies 2] [--library DIR] [--workers 1,2]
        [--unskipped]

``--unskipped`` first runs the scan verifying every pair that wants geometry, joined or not
(near_joins.py), and says whether the two scans' groups are the same.

``--workers 1,2`` also runs the scan as a job through that many ``dinoseek worker`` processes
(one task at a time each, each pinned to a core of its own: a fleet of one-core machines) on
the real Redis (``--broker``, database 13 by default, emptied first): its chunks of pairs on
the cpu queue, timed by the job's own span in the catalog (created → finished: worker start-up
and model loading left out), with its groups checked against the in-process scan's.

``--library DIR`` keeps the library (pictures, catalog, stores) in DIR and, when DIR already holds
one, scans it again without re-making or re-indexing anything (a scan-only run); with the
pictures but no catalog there, it indexes them again. ``--index-only`` stops once the library
is made and indexed (the 100,000-picture one takes over an hour; scan it in a later run).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import redis
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parent))  # bench/edits.py (after the repo: bench/workers.py is no package)

import edits  # noqa: E402

from dinoseek.settings import load_settings  # noqa: E402
from indexer.catalog.models import Job  # noqa: E402
from indexer.duplicates import saved_groups  # noqa: E402
from indexer.duplicates import scan as scan_module  # noqa: E402
from indexer.duplicates.geometry import GeometryPool, verify_pairs  # noqa: E402
from indexer.duplicates.groups import save_groups  # noqa: E402
from indexer.duplicates.scan import first_stage, last_stage, pair_judge  # noqa: E402
from indexer.jobs import create_duplicates_job, index_paths, job_json  # noqa: E402
from indexer.library import Library  # noqa: E402
from model.embedder import available_cores  # noqa: E402
from model.files import iter_image_paths  # noqa: E402
from workers.dispatch import JobDispatcher  # noqa: E402


@contextlib.contextmanager
def files_away(folder: Path):
    """The indexed pictures moved out of reach while the scan runs (it must read none), then back."""
    away = folder.with_name(folder.name + ".away")
    folder.rename(away)
    try:
        yield
    finally:
        away.rename(folder)


def run(args, root: Path) -> tuple[list, dict[str, str]]:
    """Make (unless ``root`` holds them) and index the pictures, then time the scan."""
    folder = root / "lib"
    settings = replace(load_settings(), home=root / "home", database_url=f"sqlite:///{root}/c.db",
                       vector_backend="faiss", model=None)
    reuse = (root / "c.db").exists()
    if not folder.exists():
        make_pictures(args, folder)
    source_of = {p.name: p.name.split("__")[0].rsplit(".", 1)[0] for p in folder.iterdir()}
    library = Library(settings)
    if reuse:
        print(f"scanning the library already in {root} ({len(source_of)} pictures)")
    else:
        started = time.perf_counter()
        report = index_paths(library, "bench", [folder], follow_symlinks=True)
        print(f"{report.indexed} images indexed in {time.perf_counter() - started:.1f} s "
              f"({args.limit} photos at most, {args.copies} copies each)")
    if args.index_only:
        library.close()
        raise SystemExit(0)
    with files_away(folder):
        if args.unskipped:
            started = time.perf_counter()
            every = staged_scan(library, skip=False)
            print(f"scan verifying every pair that wants it: {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        groups = staged_scan(library)
        scan_s = time.perf_counter() - started
        if args.unskipped:
            print(f"groups of the scan that skips joined pairs are those of the scan that does not: "
                  f"{[(g.kind, g.image_ids) for g in groups] == [(g.kind, g.image_ids) for g in every]}")
        library.close()
        print(f"scan: {scan_s:.1f} s, every indexed file moved away while it ran")
        for processes in args.workers:
            seconds, same = scan_on_workers(root, settings, args.broker, processes, groups)
            print(f"scan as a job on {processes} worker process(es): {seconds:.1f} s, groups as in-process: {same}")
    return groups, source_of


@contextlib.contextmanager
def timed(module, name: str, spent: dict[str, float]):
    """``module.name`` timed while the block runs (its seconds added to ``spent[name]``)."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        moment = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - moment

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


def staged_scan(library: Library, skip: bool = True) -> list:
    """``find_duplicates``'s stages one by one, each timed: the candidates and their cheap evidence,
    the geometry (the share of pairs that reach it, how many of those were skipped as joined, the
    cost of a verified pair on this machine's cores), the verdicts and groups; saved as
    ``find_duplicates`` saves them. ``skip=False`` verifies every pair that wants it, joined or not."""
    moment = time.perf_counter()
    spent: dict[str, float] = {}
    with timed(scan_module, "knn_graph", spent), timed(scan_module, "shared_patch_pairs", spent):
        plan = first_stage(library, "bench")
    wanted = plan.wanted
    first = time.perf_counter() - moment
    print(f"  first stage {first:.1f} s (" + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in spent.items())
          + f"): {len(plan.edges):,} pairs ({len(plan.shared):,} by shared patches), "
          f"{len(wanted):,} to verify ({len(wanted) / max(1, len(plan.edges)):.0%})", flush=True)
    moment = time.perf_counter()
    joins = plan.near_joins()
    joining = time.perf_counter() - moment
    with GeometryPool(library) as pool:  # as find_duplicates: one pool for the pairs and the cross pairs
        geometry = verify_pairs(library, wanted, plan.paths, joins=joins if skip else None, pool=pool)
        plan.skipped = joins.skipped
        seconds = time.perf_counter() - moment
        print(f"  the near joins of the edges judged without geometry {joining:.2f} s (part of the geometry below)")
        cores = available_cores()
        print(f"  geometry {seconds:.1f} s on {cores} cores: {len(geometry):,} pairs verified "
              f"({len(geometry) / max(1, len(plan.edges)):.0%} of all), {len(joins.skipped):,} skipped as joined; "
              f"{1000 * seconds * cores / max(1, len(geometry)):.2f} ms a verified pair", flush=True)
        moment = time.perf_counter()
        groups, judged = last_stage(plan, geometry, pair_judge(library, "bench", plan.calibration, pool))
    save_groups(library, "bench", groups, judged, None)
    print(f"  verdicts, cross pairs and groups {time.perf_counter() - moment:.1f} s", flush=True)
    return groups


def scan_on_workers(root: Path, settings, broker: str, processes: int, expected: list) -> tuple[float, bool]:
    """The scan as a job through ``processes`` worker processes: its span in seconds, and whether
    its groups are the in-process scan's."""
    redis.Redis.from_url(broker).flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DINOSEEK_")}
    env.update(DINOSEEK_HOME=str(settings.home), DINOSEEK_DATABASE_URL=settings.database_url,
               DINOSEEK_VECTOR_BACKEND="faiss", DINOSEEK_BROKER_URL=broker, OMP_NUM_THREADS="1")
    logs = [root / f"worker{processes}-{i}.log" for i in range(processes)]
    cores = sorted(os.sched_getaffinity(0))
    workers = [subprocess.Popen([sys.executable, "-m", "dinoseek.cli", "worker", "--queues", "gpu,cpu", "--concurrency",
                                 "1", "--hostname", f"scan{i}@%h"], env=env, stdout=log.open("w"),
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=lambda core=cores[i % len(cores)]: os.sched_setaffinity(0, {core}))
               for i, log in enumerate(logs)]
    library = Library(replace(settings, broker_url=broker))
    try:
        deadline = time.monotonic() + 300
        while not all(" ready." in log.read_text() for log in logs):
            if time.monotonic() > deadline:
                raise SystemExit("workers did not start: " + " | ".join(log.read_text()[-2000:] for log in logs))
            time.sleep(0.5)
        job_id = create_duplicates_job(library, "bench")
        JobDispatcher(library).submit(job_id)
        while job_json(library, job_id)["status"] in ("queued", "running"):
            time.sleep(0.5)
        with library.catalog.session() as s:
            job = s.get(Job, job_id)
            if job.status != "succeeded":
                raise SystemExit(f"the scan job failed: {job.message}")
            seconds = (job.finished_at - job.created_at).total_seconds()
        found = [(g.kind, g.image_ids) for g in saved_groups(library, "bench")]
        return seconds, found == [(g.kind, g.image_ids) for g in expected]
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=60)
        library.close()


def make_pictures(args, folder: Path) -> None:
    """The photos (linked) and ``args.copies`` edited copies of each, families drawn at random."""
    rng = random.Random(args.seed)
    families = edits.MILD + edits.STRONG
    folder.mkdir()
    for f in list(iter_image_paths([args.photos]))[: args.limit]:
        (folder / f.name).symlink_to(f)
        picture = Image.open(f).convert("RGB")
        for n in range(args.copies):
            family = rng.choice(families)
            getattr(edits, family)(picture, rng).convert("RGB").save(folder / f"{f.stem}__{family}{n}.jpg", quality=85)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/photos-1k")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--copies", type=int, default=0, help="edited copies of each photo to add")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=lambda v: [int(n) for n in v.split(",")], default=[],
                        help="comma-separated worker process counts to run the scan job through")
    parser.add_argument("--unskipped", action="store_true",
                        help="first scan verifying every pair, joined or not, side by side with the scan that skips")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--library", type=Path, help="keep the library here; scan it again if it exists")
    parser.add_argument("--index-only", action="store_true", help="make and index the library, then stop (with --library)")
    args = parser.parse_args()
    if args.index_only and args.library is None:
        parser.error("--index-only keeps the library for a later scan: give it --library DIR")
    if args.library is not None:
        args.library.mkdir(parents=True, exist_ok=True)
        groups, source_of = run(args, args.library)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            groups, source_of = run(args, Path(tmp))
    by_kind: dict[str, list] = {"exact": [], "near": [], "similar": []}
    for g in groups:
        by_kind[g.kind].append(sorted(Path(p).name for p in g.paths))
    print("groups: " + ", ".join(f"{kind} {len(v)}" for kind, v in by_kind.items()))
    mixed = [g for kind in ("near", "similar") for g in by_kind[kind] if len({source_of[n] for n in g}) > 1]
    print(f"groups holding two different photos: {len(mixed)}")
    for g in mixed[:10]:
        print("  " + ", ".join(g))
    if any("__" in name for name in source_of):
        near_of = {n: i for i, g in enumerate(by_kind["near"]) for n in g}
        placed = sum(1 for name, src in source_of.items() if "__" in name
                     and near_of.get(name) is not None and near_of.get(f"{src}.JPEG", near_of.get(f"{src}.jpg"))
                     == near_of[name])
        copies = sum(1 for name in source_of if "__" in name)
        print(f"copies in their photo's near group: {placed}/{copies} ({placed / max(1, copies):.3f})")
        families = Counter(Path(name).stem.split("__")[1].rstrip("0123456789") for name, src in source_of.items()
                           if "__" in name and (near_of.get(name) is None or near_of[name]
                                                != near_of.get(f"{src}.JPEG", near_of.get(f"{src}.jpg"))))
        print("  not placed, by edit: " + ", ".join(f"{family} {n}" for family, n in families.most_common()))
        together = sum(1 for name, src in source_of.items() if "__" in name and any(
            name in g and (f"{src}.JPEG" in g or f"{src}.jpg" in g) for g in by_kind["near"] + by_kind["similar"]))
        print(f"copies in a near or similar group with their photo: {together}/{copies} ({together / max(1, copies):.3f})")


if __name__ == "__main__":
    main()
