"""CLI commands of the distributed mode: ``dinoseek worker``, and ``index`` through the broker."""

from __future__ import annotations

import argparse
import os
import sys

from dinoseek.settings import Settings, load_settings


def submit_index(settings: Settings, collection: str, paths: list[str], prune: bool, follow_symlinks: bool) -> dict:
    """Run ``index`` on the workers and wait for its report (the same JSON as in-process)."""
    from indexer.errors import IndexerError
    from workers.app import GPU_QUEUE, create_celery

    app = create_celery(settings)
    serving = app.control.inspect(timeout=3.0).active_queues() or {}
    if not any(q["name"] == GPU_QUEUE for queues in serving.values() for q in queues):
        raise IndexerError(f"no worker is serving the {GPU_QUEUE!r} queue at {settings.broker_url}: start one with "
                           f"`dinoseek worker --queues {GPU_QUEUE}`, or unset DINOSEEK_BROKER_URL to index in-process")
    result = app.send_task("dinoseek.index", args=[collection, [os.path.abspath(p) for p in paths], prune,
                                                   follow_symlinks])
    try:
        return result.get(timeout=None)
    except IndexerError:
        raise
    except Exception as exc:  # a remote error that did not come back as its own class
        raise IndexerError(f"the worker could not index: {type(exc).__name__}: {exc}") from exc
    finally:
        result.forget()


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


def add_worker_commands(sub) -> None:
    worker = sub.add_parser("worker", help="run a Celery worker (needs DINOSEEK_BROKER_URL)")
    worker.add_argument("--queues", default="gpu,cpu", help="comma-separated: gpu, cpu (default both)")
    worker.add_argument("--concurrency", type=int, default=1,
                        help="processes (default 1: one per GPU; embedded stores have one writer anyway)")
    worker.add_argument("--pool", choices=["prefork", "solo"], default="prefork")
    worker.add_argument("--loglevel", default="INFO")
    worker.add_argument("--hostname", help="node name, e.g. gpu1@%%h (default: celery@host)")
    worker.set_defaults(func=cmd_worker)


def print_waiting(json_output: bool) -> None:
    if not json_output and sys.stderr.isatty():
        print("submitted to the workers; waiting for the job to finish…", file=sys.stderr)
