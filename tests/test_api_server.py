"""End to end over HTTP: a real gunicorn server (``dinoseek serve``), a real Celery worker, Redis
and PostgreSQL. Create a collection, upload photos, follow the job, search by an edited copy,
check and list duplicates, delete an image and see it gone."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import httpx
from PIL import Image

from tests.support.photos import skimage_photo
from tests.support.processes import cli_text, serve, stop, wait_until_ready, worker_env
from tests.support.services import free_port, wait_healthy

KEY = {"Authorization": "Bearer e2e-test-key-0123456"}
NAMES = ("coffee", "rocket", "astronaut", "chelsea", "camera")


def _jpeg(img, quality: int = 90) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def test_http_end_to_end_with_gunicorn_a_worker_redis_and_postgres(tmp_path, tiny_model, redis_url, fresh_postgres) -> None:
    env = worker_env(tmp_path / "home", tiny_model, redis_url)
    env.update(DINOSEEK_DATABASE_URL=fresh_postgres, DINOSEEK_API_KEYS="e2e-test-key-0123456,viewer-test-key-01234:ro",
               DINOSEEK_QUERY_EMBEDDING="gpu")  # query pictures are embedded by the worker
    cli_text(env, "db", "upgrade")
    port = free_port()
    worker = subprocess.Popen([sys.executable, "-m", "dinoseek.cli", "worker", "--queues", "gpu,cpu", "--hostname",
                               "w@%h"], env=env, stdout=(tmp_path / "worker.log").open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    server = serve(env, port, tmp_path / "server.log")
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_until_ready([tmp_path / "worker.log"])
        wait_healthy(base, tmp_path / "server.log")
        assert httpx.get(f"{base}/health").json() == {"status": "ok"}  # the details only to key holders
        health = httpx.get(f"{base}/health", headers=KEY).json()
        assert set(health["checks"]) == {"database", "broker", "vector_store", "collections"} and health["status"] == "ok"
        http = httpx.Client(base_url=base, headers=KEY, timeout=60)

        assert http.post("/collections", json={"name": "lib"}).status_code == 201
        files = [("files", (f"{n}.jpg", _jpeg(skimage_photo(n)), "image/jpeg")) for n in NAMES]
        files.append(("files", ("notes.jpg", b"\xff\xd8\xff not a picture", "image/jpeg")))
        refused = http.post("/collections/lib/images", files=files)
        assert refused.status_code == 422 and "notes.jpg" in refused.json()["error"]["message"]
        accepted = http.post("/collections/lib/images", files=files[:-1])
        assert accepted.status_code == 202
        job = accepted.json()["job"]
        while job["status"] in ("queued", "running"):
            time.sleep(0.2)
            job = http.get(f"/jobs/{job['id']}").json()
        assert (job["status"], job["indexed"], job["failed"], job["done"], job["total"]) == ("succeeded", 5, 0, 5, 5)

        copy = skimage_photo("chelsea")
        copy = _jpeg(copy.crop((10, 10, copy.width - 10, copy.height - 10)).resize((200, 150)), quality=55)
        found = http.post("/collections/lib/search", files={"image": ("q.jpg", copy, "image/jpeg")}, data={"k": "3"})
        assert found.status_code == 200, found.text
        results = found.json()["results"]
        assert results[0]["metadata"]["filename"] == "chelsea.jpg" and len(results) == 3
        chelsea = results[0]["image_id"]
        # a framed copy: the worker embeds the picture and the content window the server found; the
        # photo is verified inside the frame (the test model has no fitted verdicts: no verdict asserted)
        framed = Image.new("RGB", (520, 440), (200, 40, 90))
        framed.paste(skimage_photo("chelsea").resize((300, 200)), (150, 170))
        found = http.post("/collections/lib/search", files={"image": ("framed.jpg", _jpeg(framed), "image/jpeg")})
        assert found.status_code == 200, found.text
        top = next(r for r in found.json()["results"] if r["image_id"] == chelsea)
        assert top["evidence"]["inliers"] >= 12, top
        x0, y0, x1, y1 = top["evidence"]["query_box"]
        assert abs(x0 - 150) < 15 and abs(y0 - 170) < 15 and abs(x1 - 450) < 15 and abs(y1 - 370) < 15, top["evidence"]
        viewer = httpx.Client(base_url=base, headers={"X-API-Key": "viewer-test-key-01234"}, timeout=60)
        assert viewer.post("/collections/lib/search", json={"image_id": chelsea}).status_code == 200
        assert viewer.delete(f"/images/{chelsea}").status_code == 403

        check = http.post("/collections/lib/duplicates/check", files={"image": ("q.jpg", copy, "image/jpeg")},
                          data={"threshold": "0.8"}).json()
        assert [m["image_id"] for m in check["matches"]][:1] == [chelsea]
        assert http.post("/collections/lib/images", files=[("files", ("copy.jpg", copy, "image/jpeg"))]).status_code == 202
        deadline = time.monotonic() + 120
        while http.get("/collections").json()["collections"][0]["indexed"] < 6:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        scan = http.post("/collections/lib/duplicates/scan", json={"threshold": 0.8}).json()["job"]
        while scan["status"] in ("queued", "running"):
            time.sleep(0.2)
            scan = http.get(f"/jobs/{scan['id']}").json()
        assert scan["status"] == "succeeded"
        groups = http.get("/collections/lib/duplicates").json()["groups"]
        assert any(chelsea in g["image_ids"] and g["kind"] == "near" for g in groups)

        assert http.delete(f"/images/{chelsea}").status_code == 200
        after = http.post("/collections/lib/search", files={"image": ("q.jpg", copy, "image/jpeg")},
                          data={"k": "10"}).json()["results"]
        assert chelsea not in [r["image_id"] for r in after]
        assert http.get(f"/images/{chelsea}").status_code == 404
        metrics = http.get("/metrics").text
        assert "dinoseek_http_request_duration_seconds_count" in metrics
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        stop(worker)
    assert "Booting worker" in (tmp_path / "server.log").read_text()  # gunicorn served it
