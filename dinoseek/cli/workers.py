"""CLI commands of the distributed mode: ``dinoseek worker``, jobs submitted through the broker, ``job``."""

from __future__ import annotations

import argparse
import sys

import cv2

from dinoseek.cli.errors import UsageError
from dinoseek.cli.library import open_library
from dinoseek.cli.output import emit_json
from dinoseek.settings import check_secrets, load_settings
from indexer.jobs import cancel_job, job_json
from model.embedder import available_cores
from workers.app import QUEUES, create_celery
from workers.dispatch import JobDispatcher


def cmd_worker(args: argparse.Namespace) -> int:
    """Start a Celery worker on the given queues (``gpu``: embedding and vector writes; ``cpu``: scans)."""
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown or not queues:
        raise UsageError(f"--queues takes a comma-separated subset of {', '.join(QUEUES)}, got {args.queues!r}")
    settings = load_settings()
    check_secrets(settings)
    app = create_celery(settings)
    # each pool process its share of the cores for OpenCV's threads (a scan's matching), not all of them
    cv2.setNumThreads(max(1, available_cores() // max(1, args.concurrency)))
    argv = ["worker", f"--queues={','.join(queues)}", f"--concurrency={args.concurrency}", f"--pool={args.pool}",
            f"--loglevel={args.loglevel}", "--without-gossip", "--without-mingle"]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    app.worker_main(argv)
    return 0


def _job_words(words: list[str]) -> tuple[bool, int]:
    """``ID`` or ``cancel ID``: whether to cancel, and the job id."""
    cancel = len(words) == 2 and words[0] == "cancel"
    if len(words) != (2 if cancel else 1) or not words[-1].isdigit():
        raise UsageError(f"dinoseek job takes a job id or 'cancel ID', got {' '.join(words)!r}")
    return cancel, int(words[-1])


def cmd_job(args: argparse.Namespace) -> int:
    """Show a job (``--wait``: until it ends), or cancel it (``job cancel ID``)."""
    cancel, args.id = _job_words(args.words)
    library = open_library()
    try:
        if cancel:
            cancel_job(library, args.id)
        elif args.wait:
            try:
                JobDispatcher(library).wait(args.id)
            except Exception:  # noqa: BLE001 - a failed job is still shown below, with its message
                pass
        doc = job_json(library, args.id)
    finally:
        library.close()
    if args.json:
        emit_json(doc)
    else:
        line = f"job {doc['id']} ({doc['kind']}): {doc['status']}, {doc['done']}/{doc['total']} done, {doc['failed']} failed"
        print(line + (f" — {doc['message']}" if doc.get("message") else ""))
        for err in doc["errors"]:
            print(f"failed: {err['error']}", file=sys.stderr)
    return 0 if cancel or doc["status"] not in ("failed", "cancelled") else 1


def add_worker_commands(sub) -> None:
    worker = sub.add_parser("worker", help="run a Celery worker (needs DINOSEEK_BROKER_URL)")
    worker.add_argument("--queues", default="gpu,cpu", help="comma-separated: gpu, cpu (default both)")
    worker.add_argument("--concurrency", type=int, default=1,
                        help="processes (default 1: one per GPU; start one worker per GPU with CUDA_VISIBLE_DEVICES)")
    worker.add_argument("--pool", choices=["prefork", "solo"], default="prefork")
    worker.add_argument("--loglevel", default="INFO")
    worker.add_argument("--hostname", help="node name, e.g. gpu1@%%h (default: celery@host)")
    worker.set_defaults(func=cmd_worker)

    job = sub.add_parser("job", help="show a job's progress and errors (index, re-index, duplicate scan), "
                                     "or cancel it: job cancel ID")
    job.add_argument("words", nargs="+", metavar="[cancel] ID", help="the job's id, after 'cancel' to cancel it")
    job.add_argument("--wait", action="store_true", help="wait until the job ends")
    job.add_argument("--json", action="store_true")
    job.set_defaults(func=cmd_job)
