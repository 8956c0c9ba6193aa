"""Distributed indexing: real ``dinoseek worker`` processes on the real Redis broker.

The CLI submits ``index`` to the workers when ``DINOSEEK_BROKER_URL`` is set; the result must be
what the embedded mode gives for the same folder: the same rows, the same vectors.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import skimage_photo

PHOTOS = ("coffee", "rocket", "astronaut", "chelsea", "camera", "immunohistochemistry")


def _folder(root: Path) -> Path:
    root.mkdir(parents=True)
    for name in PHOTOS:
        img = skimage_photo(name)
        img.save(root / f"{name}.jpg", quality=90)
        img.resize((img.width // 2, img.height // 2)).save(root / f"{name}_small.jpg", quality=70)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def _env(home: Path, model: Path, broker: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DINOSEEK_")}
    env.update(DINOSEEK_HOME=str(home), DINOSEEK_MODEL=str(model), OMP_NUM_THREADS="1")
    if broker:
        env["DINOSEEK_BROKER_URL"] = broker
    return env


def _cli(env: dict[str, str], *args: str, timeout: float = 300) -> dict:
    out = subprocess.run([sys.executable, "-m", "dinoseek.cli", *args, "--json"], env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _start_worker(env: dict[str, str], name: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dinoseek.cli", "worker", "--queues", "gpu,cpu",
                             "--concurrency", "1", "--hostname", f"{name}@%h", "--loglevel", "INFO"],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait_until_ready(logs: list[Path], timeout: float = 180) -> None:
    """Block until every worker logged Celery's "ready." line (connected and consuming)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(log.exists() and " ready." in log.read_text() for log in logs):
            return
        time.sleep(0.2)
    raise AssertionError("workers did not start: " + " | ".join(log.read_text()[-2000:] for log in logs))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _catalog(home: Path) -> dict[str, tuple]:
    import sqlite3

    with sqlite3.connect(home / "dinoseek.db") as db:
        rows = db.execute("select path, status, sha256, width, height, patch_rows, patch_cols from images").fetchall()
    return {Path(r[0]).name: r[1:] for r in rows}


def _vectors(home: Path) -> dict[str, np.ndarray]:
    import sqlite3
    from dataclasses import replace

    from dinoseek.settings import load_settings
    from indexer.library import Library

    library = Library(replace(load_settings({}), home=home, database_url=f"sqlite:///{home / 'dinoseek.db'}"))
    stores = library.stores("lib", 384, 192)
    with sqlite3.connect(home / "dinoseek.db") as db:
        ids = dict(db.execute("select id, path from images where status = 'indexed'").fetchall())
    found, vectors = stores.global_.fetch(np.array(sorted(ids)))
    library.close()
    return {Path(ids[i]).name: v for i, v in zip(found.tolist(), vectors)}


def test_workers_index_exactly_like_the_embedded_mode(tmp_path, tiny_model, redis_url) -> None:
    folder = _folder(tmp_path / "photos")
    embedded = _env(tmp_path / "embedded", tiny_model, None)
    distributed = _env(tmp_path / "distributed", tiny_model, redis_url)
    local = _cli(embedded, "index", str(folder), "--collection", "lib")

    workers = [_start_worker(distributed, f"w{i}", tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        _wait_until_ready([tmp_path / f"worker{i}.log" for i in range(2)])
        remote = _cli(distributed, "index", str(folder), "--collection", "lib")
        assert {k: remote[k] for k in ("scanned", "indexed", "skipped", "failed")} == \
            {k: local[k] for k in ("scanned", "indexed", "skipped", "failed")} == \
            {"scanned": 13, "indexed": 12, "skipped": 0, "failed": 1}
        assert [Path(e["path"]).name for e in remote["errors"]] == ["broken.jpg"]
        # a second submission finds everything unchanged, on whichever worker takes it
        again = _cli(distributed, "index", str(folder), "--collection", "lib")
        assert (again["indexed"], again["skipped"]) == (0, 12)
        # an error in the worker reaches the user as the one-line message the embedded mode prints
        missing = subprocess.run([sys.executable, "-m", "dinoseek.cli", "index", str(tmp_path / "nowhere"),
                                  "--collection", "lib"], env=distributed, capture_output=True, text=True, timeout=300)
        assert missing.returncode == 2 and "nowhere" in missing.stderr and "Traceback" not in missing.stderr
        # readers in other processes see the workers' vectors at once, without a broker
        hits = _cli(_env(tmp_path / "distributed", tiny_model, None), "search", str(folder / "coffee_small.jpg"),
                    "--collection", "lib", "-k", "1")
        assert Path(hits["queries"][0]["results"][0]["path"]).name == "coffee.jpg"
    finally:
        for w in workers:
            _stop(w)
    logs = "".join((tmp_path / f"worker{i}.log").read_text() for i in range(2))
    assert "dinoseek.index" in logs and "succeeded" in logs

    assert _catalog(tmp_path / "distributed") == _catalog(tmp_path / "embedded")
    remote_vectors, local_vectors = _vectors(tmp_path / "distributed"), _vectors(tmp_path / "embedded")
    assert remote_vectors.keys() == local_vectors.keys() and len(local_vectors) == 12
    for name, v in local_vectors.items():
        np.testing.assert_allclose(remote_vectors[name], v, atol=1e-5)


def test_worker_needs_a_broker_and_known_queues(tmp_path, tiny_model, redis_url) -> None:
    env = _env(tmp_path / "home", tiny_model, None)
    out = subprocess.run([sys.executable, "-m", "dinoseek.cli", "worker"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "DINOSEEK_BROKER_URL is not set" in out.stderr
    env["DINOSEEK_BROKER_URL"] = redis_url
    out = subprocess.run([sys.executable, "-m", "dinoseek.cli", "worker", "--queues", "gpu,tpu"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "tpu" in out.stderr
    # a broker but no worker: a clear error, not a command that waits forever
    (tmp_path / "photos").mkdir()
    skimage_photo("coffee").save(tmp_path / "photos" / "coffee.jpg")
    out = subprocess.run([sys.executable, "-m", "dinoseek.cli", "index", str(tmp_path / "photos"), "--collection",
                          "lib"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no worker is serving the 'gpu' queue" in out.stderr


def test_a_second_writer_waits_for_the_collection_lock(tmp_path) -> None:
    from indexer.errors import Busy
    from indexer.locks import collection_writer_lock

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from indexer.locks import collection_writer_lock\n"
        f"with collection_writer_lock(Path({str(tmp_path)!r}), 'lib'):\n"
        "    print('held', flush=True); time.sleep(30)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(Busy, match="being written by another process"):
            with collection_writer_lock(tmp_path, "lib", timeout=0.5):
                pass
        assert time.monotonic() - started >= 0.5
    finally:
        holder.kill()
        holder.wait()
    with collection_writer_lock(tmp_path, "lib", timeout=5):  # a killed holder releases it
        pass


def _many_photos(root: Path, count: int) -> Path:
    """``count`` distinct JPEGs (crops and sizes of the bundled photos): a job that takes seconds."""
    root.mkdir(parents=True)
    sources = [skimage_photo(name) for name in PHOTOS]
    for i in range(count):
        img = sources[i % len(sources)]
        side = 0.5 + 0.5 * (i // len(sources)) / (count // len(sources) + 1)
        w, h = int(img.width * side), int(img.height * side)
        img.crop((0, 0, w, h)).save(root / f"p{i:04d}.jpg", quality=85)
    return root


def _pool_children(worker: subprocess.Popen) -> list[int]:
    """Pids of the worker's pool processes (children of its main process), read from /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == worker.pid:
            children.append(int(stat.parent.name))
    return children


def test_a_killed_worker_process_loses_nothing_and_indexes_nothing_twice(tmp_path, tiny_model, redis_url) -> None:
    """SIGKILL the process running the index task: the broker hands the task back, the worker's new
    process runs it again, and every image ends up indexed exactly once."""
    import sqlite3

    folder = _many_photos(tmp_path / "photos", 240)
    home = tmp_path / "home"
    env = _env(home, tiny_model, redis_url)
    worker = _start_worker(env, "w", tmp_path / "worker.log")
    try:
        _wait_until_ready([tmp_path / "worker.log"])
        deadline = time.monotonic() + 120
        while not _pool_children(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        submit = subprocess.Popen([sys.executable, "-m", "dinoseek.cli", "index", str(folder), "--collection", "lib",
                                   "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        killed = False
        while time.monotonic() < deadline and not killed:  # kill as soon as the job is running
            time.sleep(0.05)
            if (home / "dinoseek.db").exists():
                try:
                    with sqlite3.connect(home / "dinoseek.db", timeout=1) as db:
                        running = db.execute("select count(*) from jobs where status = 'running'").fetchone()[0]
                except sqlite3.OperationalError:  # tables not created yet
                    continue
                if running:
                    for pid in _pool_children(worker):
                        os.kill(pid, signal.SIGKILL)
                    killed = True
        assert killed, "the job never started"
        out, err = submit.communicate(timeout=300)
        assert submit.returncode == 0, err
        doc = json.loads(out)
    finally:
        _stop(worker)
    assert "WorkerLostError" in (tmp_path / "worker.log").read_text()
    assert doc["failed"] == 0 and doc["indexed"] + doc["skipped"] == 240

    with sqlite3.connect(home / "dinoseek.db") as db:
        statuses = db.execute("select status, count(*) from images group by status").fetchall()
        jobs = db.execute("select status, message from jobs order by id").fetchall()
        paths = db.execute("select count(distinct path), count(*) from images").fetchone()
    assert statuses == [("indexed", 240)] and paths == (240, 240)
    assert jobs[-1][0] == "succeeded"
    assert all(status == "failed" and "interrupted" in message for status, message in jobs[:-1]) and len(jobs) >= 2
    vectors = _vectors(home)
    assert len(vectors) == 240  # one global vector per image, none twice, none missing
