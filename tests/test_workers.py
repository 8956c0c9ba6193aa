"""Distributed indexing: real ``dinoseek worker`` processes on the real Redis broker.

The CLI submits ``index`` to the workers when ``DINOSEEK_BROKER_URL`` is set; the result must be
what the embedded mode gives for the same folder: the same rows, the same vectors.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.catalog import catalog_scalar, chunks_done
from tests.support.photos import PHOTOS, many_photos, skimage_photo
from tests.support.processes import (
    cli_json,
    cli_text,
    start_worker,
    stop,
    wait_for,
    wait_until_ready,
    worker_env,
)


def _folder(root: Path) -> Path:
    root.mkdir(parents=True)
    for name in PHOTOS:
        img = skimage_photo(name)
        img.save(root / f"{name}.jpg", quality=90)
        img.resize((img.width // 2, img.height // 2)).save(root / f"{name}_small.jpg", quality=70)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def _catalog_at(database_url: str) -> dict[str, tuple]:
    """Each file's row (by name): status, bytes, picture size, patch grid."""
    import sqlalchemy

    from indexer.catalog.database import make_engine

    engine = make_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text(
            "select path, status, sha256, width, height, patch_rows, patch_cols from images")).all()
    engine.dispose()
    return {Path(r[0]).name: tuple(r[1:]) for r in rows}


def _catalog(home: Path) -> dict[str, tuple]:
    return _catalog_at(f"sqlite:///{home / 'dinoseek.db'}")


def _vectors(home: Path, database_url: str | None = None) -> dict[str, np.ndarray]:
    """Each indexed file's stored global vector (by name)."""
    from dataclasses import replace

    import sqlalchemy

    from dinoseek.settings import load_settings
    from indexer.library import Library

    url = database_url or f"sqlite:///{home / 'dinoseek.db'}"
    library = Library(replace(load_settings({}), home=home, database_url=url))
    with library.catalog.engine.connect() as conn:
        (generation,) = conn.execute(sqlalchemy.text("select store_generation from collections where name = 'lib'")).one()
    stores = library.stores("lib", 384, 192, generation)
    with library.catalog.engine.connect() as conn:
        ids = dict(conn.execute(sqlalchemy.text("select id, path from images where status = 'indexed'")).all())
    found, vectors = stores.global_.fetch(np.array(sorted(ids)))
    library.close()
    return {Path(ids[i]).name: v for i, v in zip(found.tolist(), vectors)}


def test_workers_index_exactly_like_the_embedded_mode(tmp_path, tiny_model, other_tiny_model, redis_url) -> None:
    folder = _folder(tmp_path / "photos")
    embedded = worker_env(tmp_path / "embedded", tiny_model, None)
    distributed = worker_env(tmp_path / "distributed", tiny_model, redis_url)
    local = cli_json(embedded, "index", str(folder), "--collection", "lib")
    cli_json(worker_env(tmp_path / "embedded-reindexed", tiny_model, None), "index", str(folder), "--collection", "lib")
    local_reindex = cli_json(worker_env(tmp_path / "embedded-reindexed", tiny_model, None), "reindex", "--collection", "lib",
                         "--model", str(other_tiny_model))

    workers = [start_worker(distributed, f"w{i}", tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        wait_until_ready([tmp_path / f"worker{i}.log" for i in range(2)])
        remote = cli_json(distributed, "index", str(folder), "--collection", "lib", "--chunk-size", "3")
        assert {k: remote[k] for k in ("scanned", "indexed", "skipped", "failed")} == \
            {k: local[k] for k in ("scanned", "indexed", "skipped", "failed")} == \
            {"scanned": 13, "indexed": 12, "skipped": 0, "failed": 1}
        assert [Path(e["path"]).name for e in remote["errors"]] == ["broken.jpg"]
        # a second submission finds everything unchanged, on whichever worker takes it
        again = cli_json(distributed, "index", str(folder), "--collection", "lib")
        assert (again["indexed"], again["skipped"]) == (0, 12)
        # an error in the worker reaches the user as the one-line message the embedded mode prints
        missing = subprocess.run([sys.executable, "-m", "dinoseek.cli", "index", str(tmp_path / "nowhere"),
                                  "--collection", "lib"], env=distributed, capture_output=True, text=True, timeout=300)
        assert missing.returncode == 2 and "nowhere" in missing.stderr and "Traceback" not in missing.stderr
        # readers in other processes see the workers' vectors at once, without a broker
        hits = cli_json(worker_env(tmp_path / "distributed", tiny_model, None), "search", str(folder / "coffee_small.jpg"),
                    "--collection", "lib", "-k", "1")
        assert Path(hits["queries"][0]["results"][0]["path"]).name == "coffee.jpg"
        distributed_catalog, distributed_vectors = _catalog(tmp_path / "distributed"), _vectors(tmp_path / "distributed")
        # a re-index through the workers: the same outcome as in-process
        remote_reindex = cli_json(distributed, "reindex", "--collection", "lib", "--model", str(other_tiny_model),
                              "--chunk-size", "5")
    finally:
        for w in workers:
            stop(w)
    logs = "".join((tmp_path / f"worker{i}.log").read_text() for i in range(2))
    assert "dinoseek.plan" in logs and "dinoseek.chunk" in logs and "succeeded" in logs
    assert all("dinoseek.chunk" in (tmp_path / f"worker{i}.log").read_text() for i in range(2))  # both took chunks

    assert distributed_catalog == _catalog(tmp_path / "embedded")
    local_vectors = _vectors(tmp_path / "embedded")
    assert distributed_vectors.keys() == local_vectors.keys() and len(local_vectors) == 12
    for name, v in local_vectors.items():
        np.testing.assert_allclose(distributed_vectors[name], v, atol=1e-5)

    assert (remote_reindex["indexed"], remote_reindex["failed"]) == (local_reindex["indexed"], 1) == (12, 1)
    assert _catalog(tmp_path / "distributed") == _catalog(tmp_path / "embedded-reindexed")
    remote_new = _vectors(tmp_path / "distributed")
    local_new = _vectors(tmp_path / "embedded-reindexed")
    assert remote_new.keys() == local_new.keys() and len(local_new) == 12
    for name, v in local_new.items():
        np.testing.assert_allclose(remote_new[name], v, atol=1e-5)
        assert not np.allclose(local_vectors[name], v, atol=1e-3)


def test_worker_needs_a_broker_and_known_queues(tmp_path, tiny_model, redis_url) -> None:
    import sqlite3

    env = worker_env(tmp_path / "home", tiny_model, None)
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
    assert out.returncode == 2 and "no worker is serving the 'gpu' and 'cpu' queue" in out.stderr
    with sqlite3.connect(tmp_path / "home" / "dinoseek.db") as db:  # nothing was queued, so no job waits
        assert db.execute("select count(*) from jobs").fetchone()[0] == 0


def test_a_second_writer_waits_for_the_collection_lock(tmp_path) -> None:
    from indexer.errors import Busy
    from indexer.stores.locks import collection_writer_lock

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from indexer.stores.locks import collection_writer_lock\n"
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


def _check_exactly_once(database_url: str, job: dict, count: int) -> None:
    """Every image indexed once: one row per path, all indexed, one job whose counters add up."""
    assert job["status"] == "succeeded", job
    assert (job["total"], job["done"], job["indexed"], job["failed"]) == (count, count, count, 0)
    assert catalog_scalar(database_url, "select count(*) from images where status = 'indexed'") == count
    assert catalog_scalar(database_url, "select count(distinct path) from images") == count
    assert catalog_scalar(database_url, "select count(*) from jobs") == 1
    assert catalog_scalar(database_url, "select count(*) from job_errors") == 0
    assert catalog_scalar(database_url, "select count(*) from job_chunks where status <> 'done'") == 0


def test_killed_workers_lose_nothing_and_index_nothing_twice(tmp_path, tiny_model, redis_url) -> None:
    """SIGKILL the pool process mid-chunk (the broker hands the chunk back to the worker's new
    process), then SIGKILL the whole worker mid-chunk and start another (Redis redelivers the
    unacknowledged chunk after the visibility timeout): every image is indexed exactly once."""
    folder = many_photos(tmp_path / "photos", 240)
    home = tmp_path / "home"
    db = f"sqlite:///{home / 'dinoseek.db'}"
    env = worker_env(home, tiny_model, redis_url)
    env["DINOSEEK_VISIBILITY_TIMEOUT"] = "5"
    logs = [tmp_path / "worker1.log", tmp_path / "worker2.log"]
    first = start_worker(env, "w1", logs[0])
    second = None
    try:
        wait_until_ready(logs[:1])
        job = cli_json(env, "index", str(folder), "--collection", "lib", "--chunk-size", "32", "--no-wait")["job_id"]
        # a chunk is seen done just as the worker turns to the next one: wait a moment, so the kill
        # lands inside that next chunk (it takes several times longer) rather than between two
        wait_for(lambda: chunks_done(db, job) >= 1, "the first chunk")
        time.sleep(0.15)
        for pid in _pool_children(first):
            os.kill(pid, signal.SIGKILL)  # the process running the second chunk dies
        done = chunks_done(db, job)
        wait_for(lambda: chunks_done(db, job) >= done + 2, "chunks after the pool process was replaced")
        time.sleep(0.15)
        os.killpg(first.pid, signal.SIGKILL)  # the whole worker dies, holding an unacknowledged chunk
        first.wait()
        assert chunks_done(db, job) < 8
        second = start_worker(env, "w2", logs[1])
        doc = cli_json(env, "job", str(job), "--wait", timeout=300)
    finally:
        for w in (first, second):
            if w is not None:
                stop(w)
    assert "WorkerLostError" in logs[0].read_text()
    assert "dinoseek.chunk" in logs[1].read_text()
    _check_exactly_once(db, doc, 240)
    assert len(_vectors(home)) == 240  # one global vector per image, none twice, none missing


def test_a_redis_restart_mid_job_loses_nothing(tmp_path, tiny_model) -> None:
    """Stop the broker in the middle of a job and start it again: the workers reconnect, the
    queued chunks are still there (append-only file), and the job completes exactly once."""
    from tests.support.services import PrivateRedis

    redis = PrivateRedis(tmp_path / "redis")
    if redis.binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    redis.start()
    folder = many_photos(tmp_path / "photos", 160)
    home = tmp_path / "home"
    db = f"sqlite:///{home / 'dinoseek.db'}"
    env = worker_env(home, tiny_model, redis.url)
    env["DINOSEEK_VISIBILITY_TIMEOUT"] = "5"
    worker = start_worker(env, "w", tmp_path / "worker.log")
    try:
        wait_until_ready([tmp_path / "worker.log"])
        job = cli_json(env, "index", str(folder), "--collection", "lib", "--chunk-size", "16", "--no-wait")["job_id"]
        wait_for(lambda: chunks_done(db, job) >= 1, "the first chunk")
        redis.stop()
        time.sleep(2)
        redis.start()
        assert chunks_done(db, job) < 10
        doc = cli_json(env, "job", str(job), "--wait", timeout=300)
    finally:
        stop(worker)
        redis.stop()
    assert "Connection to broker lost" in (tmp_path / "worker.log").read_text()
    _check_exactly_once(db, doc, 160)
    assert len(_vectors(home)) == 160


def test_postgres_outage_is_retried_and_parity_holds(tmp_path, tiny_model, redis_url, fresh_postgres) -> None:
    """Workers on PostgreSQL index what the embedded mode indexes (same rows, same vectors), even
    when the database drops every connection and refuses new ones for a few seconds mid-job."""
    from sqlalchemy.engine import make_url

    from tests.support.services import TcpProxy

    folder = many_photos(tmp_path / "photos", 96)
    (folder / "copy.jpg").write_bytes((folder / "p0000.jpg").read_bytes())  # identical bytes reuse vectors
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")  # fails alone, in both modes
    local = cli_json(worker_env(tmp_path / "embedded", tiny_model, None), "index", str(folder), "--collection", "lib")

    direct = make_url(fresh_postgres)
    proxy = TcpProxy(direct.host or "127.0.0.1", direct.port or 5432)
    through_proxy = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    client_env = worker_env(tmp_path / "distributed", tiny_model, redis_url)
    client_env["DINOSEEK_DATABASE_URL"] = fresh_postgres
    cli_text(client_env, "db", "upgrade")
    proxied_env = dict(client_env, DINOSEEK_DATABASE_URL=through_proxy)
    worker = start_worker(proxied_env, "w", tmp_path / "worker.log")
    try:
        wait_until_ready([tmp_path / "worker.log"])
        job = cli_json(client_env, "index", str(folder), "--collection", "lib", "--chunk-size", "8",
                   "--no-wait")["job_id"]
        wait_for(lambda: chunks_done(fresh_postgres, job) >= 1, "the first chunk")
        proxy.cut()
        time.sleep(4)
        proxy.restore()
        doc = cli_json(client_env, "job", str(job), "--wait", timeout=300)
    finally:
        stop(worker)
        proxy.close()
    assert "retrying in" in (tmp_path / "worker.log").read_text()
    assert doc["status"] == "succeeded" and chunks_done(fresh_postgres, job) == 13
    assert (doc["indexed"], doc["failed"]) == (local["indexed"], local["failed"]) == (97, 1)

    assert _catalog_at(fresh_postgres) == _catalog_at(f"sqlite:///{tmp_path / 'embedded' / 'dinoseek.db'}")
    remote = _vectors(tmp_path / "distributed", fresh_postgres)
    embedded = _vectors(tmp_path / "embedded")
    assert remote.keys() == embedded.keys() and len(remote) == 97
    for name, v in embedded.items():
        np.testing.assert_allclose(remote[name], v, atol=1e-5)
