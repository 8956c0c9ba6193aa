"""CLI commands over a library: ``index``, ``search``, ``duplicates``, ``collections``, ``db``.

Each opens the ``Library`` from the settings, calls one ``indexer`` service and prints either a
human summary or, with ``--json``, the one document the CLI contract defines.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from dinoseek.cli.errors import UsageError
from dinoseek.cli.output import emit_json, progress_bar
from dinoseek.settings import load_settings
from indexer.catalog.database import Catalog
from indexer.catalog.schema import current_revision, downgrade, head_revision, upgrade
from indexer.collections import collection_counts
from indexer.duplicates import calibration, find_duplicates, saved_groups
from indexer.errors import InvalidValue
from indexer.jobs import IndexReport, create_duplicates_job, create_index_job, create_reindex_job, job_report
from indexer.library import Library
from indexer.query import VERIFY_TOP, parse_box, search_files, search_region_files
from indexer.store_gaps import describe_gaps
from workers.dispatch import JobDispatcher


def open_library() -> Library:
    """The library the settings name."""
    return Library(load_settings())


def _run_job(args: argparse.Namespace, create: Callable[[Library, int], int]) -> IndexReport | None:
    """Record a job with ``create(library, chunk_size)`` and see it through (workers.dispatch): on
    the workers when a broker is configured, waiting unless ``--no-wait``, else in this process.
    Returns its report, or None when it was only submitted (the job id is printed then)."""
    library = open_library()
    jobs = JobDispatcher(library)
    chunk_size = args.chunk_size or library.settings.chunk_size
    progress, close_bar = progress_bar(not args.json)
    try:
        if args.no_wait and not jobs.distributed:
            raise UsageError("--no-wait needs workers (DINOSEEK_BROKER_URL); without them the job runs here")
        if jobs.distributed and not args.json and not args.no_wait and sys.stderr.isatty():
            print("sending the job to the workers; waiting for it to finish…", file=sys.stderr)
        job_id = jobs.run(args.collection, lambda: create(library, chunk_size), wait=not args.no_wait,
                          progress=progress)
        if args.no_wait:
            if args.json:
                emit_json({"collection": args.collection, "job_id": job_id, "status": "queued"})
            else:
                print(f"job {job_id} queued; follow it with `dinoseek job {job_id} --wait`")
            return None
        return job_report(library, job_id)
    finally:
        close_bar()
        jobs.close()
        library.close()


def _print_report(args: argparse.Namespace, doc: dict, summary: str) -> int:
    if args.json:
        emit_json(doc)
        return 0
    for err in doc["errors"]:
        print(f"failed: {err['error']}", file=sys.stderr)
    print(summary)
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    """Add or refresh images in a collection; unchanged files are skipped."""
    report = _run_job(args, lambda library, size: create_index_job(
        library, args.collection, args.paths, chunk_size=size, prune=args.prune, follow_symlinks=args.follow_symlinks,
        force=args.force))
    if report is None:
        return 0
    doc = report.to_json()
    pruned_text = f", {report.pruned} pruned" if args.prune else ""
    refreshed_text = f" ({report.features_refreshed} with their local features found again)" if report.features_refreshed else ""
    return _print_report(args, doc, f"{args.collection}: {doc['scanned']} scanned, {doc['indexed']} indexed, "
                                    f"{doc['skipped']} unchanged{refreshed_text}, {doc['failed']} failed{pruned_text} "
                                    f"(job {doc['job_id']})")


def cmd_reindex(args: argparse.Namespace) -> int:
    """Re-embed a collection with another model; the old vectors serve until the swap."""
    report = _run_job(args, lambda library, size: create_reindex_job(library, args.collection, args.model,
                                                                     chunk_size=size))
    if report is None:
        return 0
    doc = dict(report.to_json(), model=args.model)
    return _print_report(args, doc, f"{args.collection}: {doc['indexed']} re-embedded with {args.model}, "
                                    f"{doc['failed']} failed (job {doc['job_id']}). Set DINOSEEK_MODEL={args.model} "
                                    "to index and search it from now on.")


def cmd_search(args: argparse.Namespace) -> int:
    """Query by example: the closest indexed images to each query image."""
    library = open_library()
    try:
        if args.box is not None:
            if args.threshold is not None:
                raise UsageError("--threshold does not apply to region queries (--box): their scores rank, "
                                 "they are not similarities")

            results = search_region_files(library, args.collection, args.images, args.box, k=args.k)
        else:
            results = search_files(library, args.collection, args.images, k=args.k, threshold=args.threshold,
                                   verify=not args.no_verify, verify_top=args.verify_top)
    finally:
        library.close()
    if args.json:
        emit_json({"queries": [r.to_json() for r in results]})
        return 0
    for r in results:
        print(r.query)
        if not r.results:
            print("  (no results)")
        for rank, hit in enumerate(r.results, 1):
            where = f"  at {','.join(map(str, hit.box))}" if hit.box else ""
            print(f"  {rank:>3}. {hit.score:.4f}  {hit.path}  (id {hit.image_id}){where}{_verdict_text(hit)}")
    return 0


def _verdict_text(hit) -> str:
    """A verified hit's verdict and evidence, for the text output."""
    evidence = hit.evidence
    if evidence is None or evidence.verdict is None:
        return ""
    boxes = ""
    if evidence.query_box and evidence.result_box:
        boxes = (f", in the query at {','.join(map(str, evidence.query_box))}, the query in it at "
                 f"{','.join(map(str, evidence.result_box))}")
    return f"  {evidence.verdict} (p {evidence.copy_probability:.2f}, {evidence.inliers} inliers{boxes})"


def cmd_duplicates(args: argparse.Namespace) -> int:
    """Groups of identical files (exact), edited copies (near) and other shots of a scene (similar):
    scanned on this machine's cores, or with a broker as a job whose pairs the cpu workers share."""
    library = open_library()
    jobs = JobDispatcher(library)
    try:
        model = calibration(library, args.threshold).source
        if jobs.distributed:
            jobs.check_workers()
            job_id = create_duplicates_job(library, args.collection, args.threshold)
            progress, close_bar = progress_bar(not args.json)
            try:
                jobs.submit(job_id)
                jobs.wait(job_id, progress)
            finally:
                close_bar()
            groups = saved_groups(library, args.collection)
        else:
            groups = find_duplicates(library, args.collection, threshold=args.threshold)
    finally:
        library.close()
    if args.json:
        emit_json({"verdict_model": model, "groups": [g.to_json() for g in groups]})
        return 0
    print(f"{len(groups)} duplicate groups in {args.collection} (verdicts: {model})")
    for g in groups:
        print(f"{g.kind} ({g.score:.3f}){_evidence_line(g.evidence)}:")
        for path in g.paths:
            print(f"  {path}")
    return 0


def _evidence_line(evidence: dict | None) -> str:
    """The weakest link's evidence in one line: descriptor, hash, geometry."""
    if not evidence:
        return ""
    parts = [f"descriptor {evidence['descriptor']:.3f}"]
    if evidence.get("hash") is not None:
        parts.append(f"hash {evidence['hash']:.2f}")
    geometry = evidence.get("geometry")
    if geometry and geometry.get("telling") is False:
        parts.append("too few keypoints to match")
    elif geometry:
        parts.append(f"{geometry['inliers']}/{geometry['matches']} keypoint matches agree")
    return "  [" + ", ".join(parts) + "]"


def cmd_collections(args: argparse.Namespace) -> int:
    """Every collection with its image, indexed, failed and vector counts."""
    library = open_library()
    try:
        rows = collection_counts(library)
    finally:
        library.close()
    if args.json:
        emit_json({"collections": rows})
        return 0
    if not rows:
        print("no collections yet: `dinoseek index PATH --collection NAME` creates one")
    for row in rows:
        model = (row["model"] or "-")[:12]
        print(f"{row['name']}: {row['images']} images, {row['indexed']} indexed, {row['failed']} failed, "
              f"{row['vectors']} vectors ({row['vector_backend']}), model {model}")
        gap = describe_gaps(row["name"], row)
        if gap:
            print(f"  warning: {gap}")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    """Catalog schema: ``upgrade`` to the newest migration, ``downgrade`` to a revision, ``current``."""
    catalog = Catalog(load_settings().database_url)
    try:
        if args.action == "upgrade":
            upgrade(catalog, args.revision or "head")
        elif args.action == "downgrade":
            if not args.revision:
                raise UsageError("db downgrade needs a revision (use `base` to drop every table)")
            downgrade(catalog, args.revision)
        current = current_revision(catalog)
    finally:
        catalog.dispose()
    print(f"catalog at revision {current or 'none'} (newest: {head_revision()})")
    return 0


def _box(text: str) -> list[int]:
    """``--box X0,Y0,X1,Y1``: parsed as every front parses a box."""
    try:
        return parse_box(text)
    except InvalidValue as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_library_commands(sub) -> None:
    index = sub.add_parser("index", help="add or refresh image files in a collection")
    index.add_argument("paths", nargs="+", help="image files or folders (walked recursively)")
    index.add_argument("--collection", required=True)
    index.add_argument("--prune", action="store_true",
                       help="remove rows and vectors of files under the paths that no longer exist")
    index.add_argument("--force", action="store_true",
                       help="with --prune: remove them even when more than half of the paths' images are missing")
    index.add_argument("--follow-symlinks", action="store_true")
    index.add_argument("--chunk-size", type=_positive, help="images per task (default DINOSEEK_CHUNK_SIZE, 512)")
    index.add_argument("--no-wait", action="store_true", help="with workers: print the job id and return")
    index.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    index.set_defaults(func=cmd_index)

    reindex = sub.add_parser("reindex", help="re-embed a collection with another model, then swap atomically")
    reindex.add_argument("--collection", required=True)
    reindex.add_argument("--model", required=True, help="checkpoint file (or model name) to embed with")
    reindex.add_argument("--chunk-size", type=_positive, help="images per task (default DINOSEEK_CHUNK_SIZE, 512)")
    reindex.add_argument("--no-wait", action="store_true", help="with workers: print the job id and return")
    reindex.add_argument("--json", action="store_true")
    reindex.set_defaults(func=cmd_reindex)

    search = sub.add_parser("search", help="find the indexed images closest to query images")
    search.add_argument("images", nargs="+", help="query image files")
    search.add_argument("--collection", required=True)
    search.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    search.add_argument("--threshold", type=float, help="leave out results scoring below this")
    search.add_argument("--box", type=_box, help="X0,Y0,X1,Y1: search for this region of the query")
    search.add_argument("--no-verify", action="store_true",
                        help="the descriptor's order as it is: no verification of the candidates against the query")
    search.add_argument("--verify-top", type=_positive, default=VERIFY_TOP,
                        help=f"descriptor candidates verified against the query (default {VERIFY_TOP})")
    search.add_argument("--json", action="store_true")
    search.set_defaults(func=cmd_search)

    dup = sub.add_parser("duplicates", help="groups of identical files, edited copies and other shots of a scene")
    dup.add_argument("--collection", required=True)
    dup.add_argument("--threshold", type=float,
                     help="descriptor cosine that alone decides near copies (default: the calibrated verdict)")
    dup.add_argument("--json", action="store_true")
    dup.set_defaults(func=cmd_duplicates)

    cols = sub.add_parser("collections", help="list collections and their counts")
    cols.add_argument("--json", action="store_true")
    cols.set_defaults(func=cmd_collections)

    db = sub.add_parser("db", help="catalog schema migrations")
    db.add_argument("action", choices=["upgrade", "downgrade", "current"])
    db.add_argument("revision", nargs="?", help="target revision (default for upgrade: head)")
    db.set_defaults(func=cmd_db)
