"""Distributed indexing throughput: images/s embedded, with one worker process, with two.

Indexes the same folder of real photos three ways, each into a fresh home: in-process (no broker),
through one Celery worker process, and through two (``--concurrency 2``), on the real Redis.
Every process runs torch on one thread, so the one-process figures compare like with like and two
processes show what a second core buys. Time is the job's own span in the catalog (created →
finished), so process start-up and model loading are left out; the worker figures include
queueing, planning on the cpu queue, chunk tasks and the writer lock. Modes are interleaved
within each repeat and the median of each is reported, with the per-image overhead of one worker
against the embedded mode.

    .venv/bin/python bench/workers.py --photos ../shared/data/photos-1k --limit 600 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _env(home: Path, broker: str | None, model: str | None, chunk_size: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DINOSEEK_")}
    env.update(DINOSEEK_HOME=str(home), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               DINOSEEK_CHUNK_SIZE=str(chunk_size))
    if model:
        env["DINOSEEK_MODEL"] = model
    if broker:
        env["DINOSEEK_BROKER_URL"] = broker
    return env


def _job_seconds(home: Path) -> tuple[float, int]:
    import sqlite3
    from datetime import datetime

    with sqlite3.connect(home / "dinoseek.db") as db:
        created, finished, indexed = db.execute(
            "select created_at, finished_at, indexed from jobs order by id desc limit 1").fetchone()
    return (datetime.fromisoformat(finished) - datetime.fromisoformat(created)).total_seconds(), indexed


def _index(env: dict[str, str], folder: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "dinoseek.cli", "index", str(folder), "--collection", "bench",
                          "--follow-symlinks", "--json"], env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"index failed: {out.stderr}")
    json.loads(out.stdout)


def _run_workers(tmp: Path, folder: Path, broker: str, model: str | None, chunk_size: int, processes: int) -> tuple[float, int]:
    home = tmp / f"workers{processes}"
    env = _env(home, broker, model, chunk_size)
    log = tmp / f"worker{processes}.log"
    worker = subprocess.Popen([sys.executable, "-m", "dinoseek.cli", "worker", "--queues", "gpu,cpu",
                               "--concurrency", str(processes), "--loglevel", "INFO"], env=env,
                              stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while " ready." not in log.read_text():
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"worker did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        time.sleep(2.0 * processes)  # let every pool process finish loading the model
        _index(env, folder)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
    return _job_seconds(home)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared/data/photos-1k")
    parser.add_argument("--model", help="checkpoint (default: DINOSEEK_MODEL, then the shipped model)")
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--broker", default=os.environ.get("DINOSEEK_TEST_REDIS_URL", "redis://127.0.0.1:6379/12"))
    args = parser.parse_args()
    import redis

    from model.files import iter_image_paths

    files = list(iter_image_paths([args.photos]))[: args.limit]
    rates: dict[str, list[float]] = {"embedded": [], "1 worker process": [], "2 worker processes": []}
    spans: dict[str, list[float]] = {k: [] for k in rates}
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            folder = tmp / "photos"
            folder.mkdir()
            for f in files:
                (folder / f.name).symlink_to(f.resolve())
            redis.Redis.from_url(args.broker).flushdb()
            home = tmp / "embedded"
            _index(_env(home, None, args.model, args.chunk_size), folder)
            runs = {"embedded": _job_seconds(home),
                    "1 worker process": _run_workers(tmp, folder, args.broker, args.model, args.chunk_size, 1),
                    "2 worker processes": _run_workers(tmp, folder, args.broker, args.model, args.chunk_size, 2)}
            for mode, (seconds, indexed) in runs.items():
                rates[mode].append(indexed / seconds)
                spans[mode].append(seconds)
            print(f"repeat {repeat + 1}: " + ", ".join(f"{m} {r[-1]:.1f} img/s" for m, r in rates.items()),
                  flush=True)
    n = len(files)
    print(f"\n{n} photos, chunk size {args.chunk_size}, torch on 1 thread per process, median of {args.repeats}:")
    for mode, values in rates.items():
        print(f"  {mode:20s} {statistics.median(values):6.1f} images/s  ({statistics.median(spans[mode]):.1f} s)")
    embedded, one, two = (statistics.median(spans[m]) for m in rates)
    print(f"  overhead of one worker against embedded: {1000 * (one - embedded) / n:+.2f} ms per image "
          f"({one / embedded - 1:+.1%})")
    print(f"  two processes against one: {one / two:.2f}x")


if __name__ == "__main__":
    main()
