"""Jobs that cannot run forever (issue 17, finding 4): a chunk that kills its worker is given up
after DINOSEEK_MAX_CHUNK_STARTS starts (its files fail with the reason, the job goes on), tasks
have a time limit, and any job can be cancelled — by ``dinoseek job cancel`` or
``POST /jobs/{id}/cancel`` — on the workers and in-process alike."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import httpx

from api import create_app
from dinoseek.settings import load_settings
from indexer.jobs import create_index_job, index_paths
from indexer.library import Library
from tests.support.catalog import catalog_scalar, chunks_done
from tests.support.photos import many_photos
from tests.support.processes import cli_json, start_worker, stop, wait_for, wait_until_ready, worker_env
from tests.support.services import serving
from tests.test_workers import _pool_children
from workers.app import create_celery

KEY, READ_ONLY = "cancel-test-key-0123456", "cancel-test-read-only-key"


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dinoseek.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def _started_unfinished(db: str, job: int) -> int:
    return catalog_scalar(db, "select count(*) from job_chunks where job_id = :job and status = 'pending' and starts = 1",
                          job=job)


def test_a_chunk_whose_worker_dies_each_start_fails_its_files_and_the_job_goes_on(tmp_path, tiny_model,
                                                                                 redis_url) -> None:
    # chunks of 120 photos take about 2 s: the kill must land inside one, however slow the
    # machine is to notice it started (chunks of 40, 0.7 s, were sometimes over before the kill)
    folder = many_photos(tmp_path / "photos", 360)
    home = tmp_path / "home"
    db = f"sqlite:///{home / 'dinoseek.db'}"
    env = worker_env(home, tiny_model, redis_url) | {"DINOSEEK_MAX_CHUNK_STARTS": "1"}
    log = tmp_path / "worker.log"
    worker = start_worker(env, "w1", log)
    try:
        wait_until_ready([log])
        job = cli_json(env, "index", str(folder), "--collection", "lib", "--chunk-size", "120", "--no-wait")["job_id"]
        wait_for(lambda: _started_unfinished(db, job) == 1, "a chunk in progress", timeout=120)
        for pid in _pool_children(worker):
            os.kill(pid, signal.SIGKILL)  # the process dies inside the chunk: the broker hands it back
        doc = cli_json(env, "job", str(job), "--wait", timeout=300)
    finally:
        stop(worker)
    assert "WorkerLostError" in log.read_text()
    assert doc["status"] == "succeeded", doc  # the job went on past the chunk
    assert (doc["done"], doc["indexed"], doc["failed"]) == (360, 240, 120), doc
    assert len(doc["errors"]) == 120
    assert all("started 1 times and never finished" in e["error"] and e["error"].startswith(e["path"])
               for e in doc["errors"])
    assert catalog_scalar(db, "select count(*) from images where status = 'failed'") == 120
    assert catalog_scalar(db, "select max(starts) from job_chunks where job_id = :job", job=job) == 2


def test_workers_kill_a_task_at_the_time_limit(tmp_path) -> None:
    settings = replace(load_settings({}), home=tmp_path, broker_url="redis://127.0.0.1:6379/0", task_time_limit=77)
    assert create_celery(settings).conf.task_time_limit == 77
    assert load_settings({"DINOSEEK_TASK_TIME_LIMIT": "5", "DINOSEEK_MAX_CHUNK_STARTS": "2"}).task_time_limit == 5


def test_cancelling_a_job_on_the_workers_stops_it_and_keeps_what_it_finished(tmp_path, tiny_model, redis_url) -> None:
    # 60 chunks: the job must still be running when the cancel command, a process of its own that
    # loads the CLI, arrives, however busy the machine is
    folder = many_photos(tmp_path / "photos", 960)
    home = tmp_path / "home"
    db = f"sqlite:///{home / 'dinoseek.db'}"
    env = worker_env(home, tiny_model, redis_url)
    log = tmp_path / "worker.log"
    worker = start_worker(env, "w1", log)
    try:
        wait_until_ready([log])
        job = cli_json(env, "index", str(folder), "--collection", "lib", "--chunk-size", "16", "--no-wait")["job_id"]
        wait_for(lambda: chunks_done(db, job) >= 1, "the first chunk")
        cancelled = cli_json(env, "job", "cancel", str(job), "--json")
        at_cancel = chunks_done(db, job)
        time.sleep(3)  # the queued chunks are delivered and skipped; the one in hand writes nothing
        after = chunks_done(db, job)
        again = _cli(env, "job", "cancel", str(job))
        waited = _cli(env, "job", str(job), "--wait")
    finally:
        stop(worker)
    assert cancelled["status"] == "cancelled" and cancelled["message"] == "cancelled"
    assert at_cancel <= after <= at_cancel + 1 and after < 60, (at_cancel, after)
    indexed = catalog_scalar(db, "select count(*) from images where status = 'indexed'")
    assert indexed == 16 * after  # every finished chunk stays, nothing of the others was written
    assert again.returncode != 0 and "already been cancelled" in again.stderr
    assert waited.returncode == 1 and "cancelled" in waited.stdout


def test_cancelling_an_in_process_index_stops_it_and_the_next_index_finishes(tmp_path, tiny_model) -> None:
    folder = many_photos(tmp_path / "photos", 600)
    home = tmp_path / "home"
    db = f"sqlite:///{home / 'dinoseek.db'}"
    env = worker_env(home, tiny_model, None)
    running = subprocess.Popen([sys.executable, "-m", "dinoseek.cli", "index", str(folder), "--collection", "lib",
                                "--chunk-size", "32"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        wait_for(lambda: catalog_scalar(db, "select count(*) from jobs where status = 'running'") == 1, "the job")
        cancelled = cli_json(env, "job", "cancel", "1", "--json")
        _, stderr = running.communicate(timeout=120)
    finally:
        running.kill()
    assert cancelled["status"] == "cancelled"
    assert running.returncode != 0 and "job 1 was cancelled" in stderr, stderr
    indexed = catalog_scalar(db, "select count(*) from images where status = 'indexed'")
    assert indexed == 32 * chunks_done(db, 1) and indexed < 600  # stopped early, finished chunks kept
    report = cli_json(env, "index", str(folder), "--collection", "lib", "--json")  # not blocked by the cancelled job
    assert report["indexed"] == 600 - indexed and report["skipped"] == indexed


def test_cancel_over_http(tmp_path, tiny_model) -> None:
    settings = replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                       model=str(tiny_model), api_keys=(KEY, f"{READ_ONLY}:ro"))
    folder = many_photos(tmp_path / "photos", 4)
    library = Library(settings)
    finished = index_paths(library, "lib", [folder]).job_id
    queued = create_index_job(library, "lib", [folder])
    library.close()
    with serving(create_app(settings)) as base, httpx.Client(base_url=base, timeout=30) as http:
        write, read = {"X-API-Key": KEY}, {"X-API-Key": READ_ONLY}
        assert http.post(f"/jobs/{queued}/cancel", headers=read).status_code == 403
        answer = http.post(f"/jobs/{queued}/cancel", headers=write)
        assert answer.status_code == 200 and answer.json()["status"] == "cancelled", answer.text
        for job in (queued, finished):
            answer = http.post(f"/jobs/{job}/cancel", headers=write)
            assert answer.status_code == 409 and answer.json()["error"]["code"] == "not_active", answer.text
        assert "succeeded" in http.post(f"/jobs/{finished}/cancel", headers=write).json()["error"]["message"]
        missing = http.post("/jobs/999/cancel", headers=write)
        assert missing.status_code == 404 and "no job with id 999" in missing.json()["error"]["message"]
        assert http.get(f"/jobs/{queued}", headers=read).json()["status"] == "cancelled"
