"""The fleet, end to end, without Docker: PostgreSQL, Redis, two ``dinoseek worker`` processes and a
gunicorn API (``dinoseek serve``), each a separate process on loopback, sharing one DINOSEEK_HOME
for the FAISS files as workers on one machine do.

The API indexes a folder of real photos on the workers; one worker is SIGKILLed while it holds a
chunk, and the job still ends with every image indexed exactly once. The library is then backed up
(``dinoseek backup``), restored into another fresh database and a fresh vector home
(``dinoseek restore``), and the restored library answers the searches the API answered.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.catalog import catalog_scalar, chunks_done
from tests.support.databases import scratch_databases
from tests.support.photos import many_photos
from tests.support.processes import cli_json, cli_text, serve, start_worker, stop, wait_for, wait_until_ready, worker_env
from tests.support.services import free_port, service_or_skip, wait_healthy

KEY = {"Authorization": "Bearer fleet-test-key-012345"}
COUNT, CHUNK = 96, 8


@pytest.fixture
def redis_db11() -> str:
    """Database 11 of the real Redis server, emptied before and after (no other database is touched)."""
    import redis

    base = os.environ.get("DINOSEEK_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    base = base.rsplit("/", 1)[0] if base.rsplit("/", 1)[-1].isdigit() else base
    url = f"{base}/11"
    service_or_skip("Redis", lambda: redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def databases(postgres_url):
    with scratch_databases(postgres_url, "dinoseek_fleet") as made:
        yield made


def _chunk_tasks(log: Path) -> tuple[int, int]:
    """(chunk tasks received, chunk tasks finished) according to a worker's log."""
    text = log.read_text() if log.exists() else ""
    received = len(re.findall(r"Task dinoseek\.chunk\[[^\]]+\] received", text))
    finished = len(re.findall(r"Task dinoseek\.chunk\[[^\]]+\] (?:succeeded|failed|retry)", text))
    return received, finished


QUERIED = ("p0090.jpg", "p0093.jpg", "p0049.jpg")


def _queries(root: Path, folder: Path) -> list[Path]:
    """Re-encoded, shrunk copies of three indexed pictures (not themselves indexed)."""
    from PIL import Image

    root.mkdir()
    out = []
    for name in QUERIED:
        with Image.open(folder / name) as img:
            path = root / f"copy-of-{name}"
            img.resize((img.width * 3 // 4, img.height * 3 // 4)).save(path, quality=55)
        out.append(path)
    return out


def test_fleet_indexes_survives_a_worker_kill_backs_up_and_restores(tmp_path, tiny_model, redis_db11,
                                                                   databases) -> None:
    folder = many_photos(tmp_path / "photos", COUNT)
    queries = _queries(tmp_path / "queries", folder)
    database = databases.create()
    env = worker_env(tmp_path / "home", tiny_model, redis_db11)  # one home: the workers share the FAISS files
    env.update(DINOSEEK_DATABASE_URL=database, DINOSEEK_API_KEYS="fleet-test-key-012345", DINOSEEK_ALLOWED_ROOTS=str(folder),
               DINOSEEK_CHUNK_SIZE=str(CHUNK), DINOSEEK_VISIBILITY_TIMEOUT="4")
    cli_text(env, "db", "upgrade")  # the fleet's one-shot migrate service

    logs = [tmp_path / "worker1.log", tmp_path / "worker2.log"]
    workers = [start_worker(env, f"w{i + 1}", logs[i]) for i in range(2)]
    port = free_port()
    server = serve(env, port, tmp_path / "server.log")
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_until_ready(logs)
        wait_healthy(base, tmp_path / "server.log")
        http = httpx.Client(base_url=base, headers=KEY, timeout=120)
        assert http.post("/collections", json={"name": "lib"}).status_code == 201
        accepted = http.post("/collections/lib/index-jobs", json={"paths": [str(folder)]})
        assert accepted.status_code == 202, accepted.text
        job = accepted.json()["job"]["id"]

        # SIGKILL the first worker (main and pool process) while it holds an unfinished chunk
        wait_for(lambda: chunks_done(database, job) >= 1, "the first chunk", timeout=120)
        wait_for(lambda: (lambda r, f: r > f)(*_chunk_tasks(logs[0])), "worker 1 to hold a chunk", timeout=120)
        os.killpg(workers[0].pid, signal.SIGKILL)
        workers[0].wait()
        received, finished = _chunk_tasks(logs[0])
        assert received > finished, "worker 1 held no chunk when it was killed"
        assert chunks_done(database, job) < COUNT // CHUNK, "the job was over before the kill"

        deadline = time.monotonic() + 120
        doc = http.get(f"/jobs/{job}").json()
        while doc["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, doc
            time.sleep(0.3)
            doc = http.get(f"/jobs/{job}").json()
        # every image indexed exactly once, the killed worker's chunk included
        assert (doc["status"], doc["total"], doc["done"], doc["indexed"], doc["failed"]) == \
            ("succeeded", COUNT, COUNT, COUNT, 0), doc
        assert catalog_scalar(database, "select count(*) from images where status = 'indexed'") == COUNT
        assert catalog_scalar(database, "select count(distinct path) from images") == COUNT
        assert catalog_scalar(database, "select count(*) from job_chunks where status <> 'done'") == 0
        assert catalog_scalar(database, "select count(*) from job_errors") == 0
        (row,) = http.get("/collections").json()["collections"]
        assert (row["images"], row["indexed"], row["vectors"]) == (COUNT, COUNT, COUNT)
        assert "dinoseek.chunk" in logs[1].read_text()  # the survivor took chunks, the stranded one too

        answers = []
        for query in queries:
            found = http.post("/collections/lib/search", files={"image": (query.name, query.read_bytes(), "image/jpeg")},
                              data={"k": "8"})
            assert found.status_code == 200, found.text
            answers.append(found.json()["results"])
        assert [Path(a[0]["path"]).name for a in answers] == list(QUERIED)  # each copy finds its original

        archive = tmp_path / "fleet-backup.tar"
        backed_up = cli_json(env, "backup", str(archive))
        assert backed_up["vectors"]["lib.global"] == COUNT and backed_up["rows"]["images"] == COUNT
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        for w in workers:
            stop(w)

    # another fresh database, another home: the restored library answers as the fleet did
    restored_env = worker_env(tmp_path / "restored-home", tiny_model, None)
    restored_env["DINOSEEK_DATABASE_URL"] = databases.create()
    restored = cli_json(restored_env, "restore", str(archive))
    assert restored["rows"] == backed_up["rows"] and restored["vectors"] == backed_up["vectors"]
    assert (tmp_path / "restored-home" / "stores" / "lib.global.faiss").is_file()
    out = subprocess.run([sys.executable, "-m", "dinoseek.cli", "search", *map(str, queries), "--collection", "lib",
                          "-k", "8", "--json"], env=restored_env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for api_hits, cli in zip(answers, json.loads(out.stdout)["queries"]):
        hits = cli["results"]
        assert [(h["image_id"], h["path"]) for h in hits] == [(h["image_id"], h["path"]) for h in api_hits]
        np.testing.assert_allclose([h["score"] for h in hits], [h["score"] for h in api_hits], atol=1e-5)
