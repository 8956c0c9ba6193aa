"""CLI commands of the distributed mode: ``dinoseek worker``, jobs submitted through the broker, ``job``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from dinoseek.settings import Settings, load_settings

POLL_SECONDS = 0.5
QUEUED_WARNING_SECONDS = 60.0


def check_workers(app, settings: Settings) -> None:
    """Refuse to queue work that no running worker would take (the wait would never end)."""
    from indexer.errors import IndexerError
    from workers.app import QUEUES

    serving = app.control.inspect(timeout=3.0).active_queues() or {}
    served = {q["name"] for queues in serving.values() for q in queues}
    missing = [q for q in QUEUES if q not in served]
    if missing:
        raise IndexerError(f"no worker is serving the {' and '.join(repr(q) for q in missing)} queue at "
                           f"{settings.broker_url}: start one with `dinoseek worker --queues {','.join(missing)}`, "
                           "or unset DINOSEEK_BROKER_URL to run jobs in-process")


def connect_workers(settings: Settings):
    """The Celery app, once a worker is known to serve each queue."""
    from workers.app import create_celery

    app = create_celery(settings)
    check_workers(app, settings)
    return app


def submit_job(app, library, job_id: int) -> None:
    """Queue a recorded job (index or re-index): its plan task goes to the cpu queue. A job that
    could not be queued is marked failed, so it never blocks the collection."""
    from indexer.indexing import fail_job, job_token

    try:
        app.send_task("dinoseek.plan", args=[job_id, job_token(library, job_id)])
    except BaseException as exc:
        fail_job(library, job_id, f"could not queue the job: {type(exc).__name__}: {exc}")
        raise


def wait_for_job(library, job_id: int, progress: Callable[[int, int], None] | None = None) -> None:
    """Poll the catalog until the job ends; a failed job raises its message."""
    from indexer.catalog.models import Job
    from indexer.errors import IndexerError

    started, warned = time.monotonic(), False
    while True:
        with library.catalog.session() as s:
            job = s.get(Job, job_id)
            status, done, total, message = job.status, job.done, job.total, job.message
        if progress and total:
            progress(done, total)
        if status == "succeeded":
            return
        if status == "failed":
            raise IndexerError(f"job {job_id} failed: {message}")
        if status == "queued" and not warned and time.monotonic() - started > QUEUED_WARNING_SECONDS:
            warned = True
            print(f"job {job_id} is still queued after {QUEUED_WARNING_SECONDS:.0f} s: the workers may be busy, or "
                  "may use another catalog (they must share DINOSEEK_DATABASE_URL or DINOSEEK_HOME with this "
                  "command; their log says so)", file=sys.stderr)
        time.sleep(POLL_SECONDS)


def cmd_worker(args: argparse.Namespace) -> int:
    """Start a Celery worker on the given queues (``gpu``: embedding and vector writes; ``cpu``: scans)."""
    from dinoseek.errors import UsageError
    from workers.app import QUEUES, create_celery

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown or not queues:
        raise UsageError(f"--queues takes a comma-separated subset of {', '.join(QUEUES)}, got {args.queues!r}")
    app = create_celery(load_settings())
    argv = ["worker", f"--queues={','.join(queues)}", f"--concurrency={args.concurrency}", f"--pool={args.pool}",
            f"--loglevel={args.loglevel}", "--without-gossip", "--without-mingle"]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    app.worker_main(argv)
    return 0


def cmd_job(args: argparse.Namespace) -> int:
    """Show a job (``--wait``: until it ends)."""
    from indexer.indexing import job_json
    from indexer.library import Library

    library = Library(load_settings())
    try:
        if args.wait:
            try:
                wait_for_job(library, args.id)
            except Exception:  # noqa: BLE001 - a failed job is still shown below, with its message
                pass
        doc = job_json(library, args.id)
    finally:
        library.close()
    if args.json:
        json.dump(doc, sys.stdout)
        sys.stdout.write("\n")
    else:
        line = f"job {doc['id']} ({doc['kind']}): {doc['status']}, {doc['done']}/{doc['total']} done, {doc['failed']} failed"
        print(line + (f" — {doc['message']}" if doc.get("message") else ""))
        for err in doc["errors"]:
            print(f"failed: {err['error']}", file=sys.stderr)
    return 0 if doc["status"] != "failed" else 1


def add_worker_commands(sub) -> None:
    worker = sub.add_parser("worker", help="run a Celery worker (needs DINOSEEK_BROKER_URL)")
    worker.add_argument("--queues", default="gpu,cpu", help="comma-separated: gpu, cpu (default both)")
    worker.add_argument("--concurrency", type=int, default=1,
                        help="processes (default 1: one per GPU; start one worker per GPU with CUDA_VISIBLE_DEVICES)")
    worker.add_argument("--pool", choices=["prefork", "solo"], default="prefork")
    worker.add_argument("--loglevel", default="INFO")
    worker.add_argument("--hostname", help="node name, e.g. gpu1@%%h (default: celery@host)")
    worker.set_defaults(func=cmd_worker)

    job = sub.add_parser("job", help="show an index or re-index job's progress and errors")
    job.add_argument("id", type=int)
    job.add_argument("--wait", action="store_true", help="wait until the job ends")
    job.add_argument("--json", action="store_true")
    job.set_defaults(func=cmd_job)


def print_waiting(json_output: bool) -> None:
    if not json_output and sys.stderr.isatty():
        print("submitted to the workers; waiting for the job to finish…", file=sys.stderr)
