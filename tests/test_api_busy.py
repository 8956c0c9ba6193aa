"""A delete while a job holds the collection's writer lock answers 409 ``busy`` in seconds, over
real HTTP, and never freezes the API (issue 17, finding 7)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
from sqlalchemy import select

from api import create_app
from dinoseek.settings import load_settings
from indexer.catalog.models import Image
from indexer.images import DELETE_LOCK_SECONDS
from indexer.jobs import index_paths
from indexer.library import Library
from tests.support.photos import skimage_photo
from tests.support.services import serving

KEY = {"X-API-Key": "busy-test-key-0123456"}


def test_a_delete_during_a_job_is_busy_not_hung_and_succeeds_after(tmp_path, tiny_model) -> None:
    settings = replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                       model=str(tiny_model), api_keys=(KEY["X-API-Key"],))
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("coffee", "rocket"):
        skimage_photo(name).save(folder / f"{name}.jpg", quality=90)
    indexer = Library(settings)
    index_paths(indexer, "lib", [folder])
    with indexer.catalog.session() as s:
        image_id = s.scalar(select(Image.id).order_by(Image.id))
    held, release = threading.Event(), threading.Event()

    def job_holding_the_lock() -> None:  # what an embedded index job does for its whole run
        with indexer.writer_lock("lib"):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=job_holding_the_lock)
    holder.start()
    assert held.wait(10)
    try:
        with serving(create_app(settings)) as base, httpx.Client(base_url=base, headers=KEY, timeout=30) as http:
            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:  # eight deletes at once no longer freeze the server
                deletes = [pool.submit(http.delete, f"/images/{image_id}") for _ in range(8)]
                time.sleep(0.5)
                health = http.get("/health")
                answers = [d.result() for d in deletes]
            assert health.status_code == 200 and time.monotonic() - started < DELETE_LOCK_SECONDS + 10
            for answer in answers:
                assert answer.status_code == 409, answer.text
                assert answer.json()["error"]["code"] == "busy" and "being written" in answer.json()["error"]["message"]
            assert http.get(f"/images/{image_id}").status_code == 200  # nothing was deleted
            release.set()
            holder.join(10)
            assert http.delete(f"/images/{image_id}").status_code == 200
            assert http.get(f"/images/{image_id}").status_code == 404
    finally:
        release.set()
        holder.join(10)
        indexer.close()
