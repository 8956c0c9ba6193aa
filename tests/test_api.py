"""The REST API through Flask's test client: auth, errors, collections, uploads, server paths,
jobs, search, duplicates, images, health and metrics, on real photos with the embedded stores."""

from __future__ import annotations

import io
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import update

from indexer.catalog.models import ImageFeatures
from tests.support.photos import skimage_photo

RW = {"Authorization": "Bearer rw-key-for-tests-0123"}
RO = {"X-API-Key": "ro-key-for-tests-0123"}
NAMES = ("coffee", "rocket", "astronaut", "chelsea", "camera")


def _jpeg(img: PILImage.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _settings(tmp_path: Path, model: Path, **changes):
    from dinoseek.settings import load_settings

    home = tmp_path / "home"
    values = {"home": home, "database_url": f"sqlite:///{home / 'dinoseek.db'}", "model": str(model),
              "api_keys": ("rw-key-for-tests-0123", "ro-key-for-tests-0123:ro"), "allowed_roots": (tmp_path.resolve() / "served",)}
    return replace(load_settings({}), **{**values, **changes})


@pytest.fixture
def client(tmp_path, tiny_model):
    from api import create_app

    app = create_app(_settings(tmp_path, tiny_model))
    yield app.test_client()
    app.extensions["dinoseek"].close()


def _wait(client, job: dict, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        job = client.get(f"/api/v1/jobs/{job['id']}", headers=RO).get_json()
    return job


def _upload(client, collection: str, files: dict[str, bytes]) -> dict:
    data = {"files": [(io.BytesIO(b), name) for name, b in files.items()]}
    response = client.post(f"/api/v1/collections/{collection}/images", data=data, headers=RW,
                           content_type="multipart/form-data")
    assert response.status_code == 202, response.get_json()
    return _wait(client, response.get_json()["job"])


def _error(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.data[:500])
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return body["error"]["message"]


def test_keys_are_required_and_read_only_keys_cannot_write(client) -> None:
    assert client.get("/api/v1/health").status_code == 200  # the one public route
    assert "API key is required" in _error(client.get("/api/v1/collections"), 401)
    assert "unknown API key" in _error(client.get("/api/v1/collections", headers={"X-API-Key": "nope"}), 401)
    assert client.get("/api/v1/collections", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/v1/collections", headers=RO).status_code == 200
    assert client.get("/api/v1/openapi.json").status_code == 401
    assert "read-only" in _error(client.post("/api/v1/collections", json={"name": "x"}, headers=RO), 403)
    assert client.post("/api/v1/collections", json={"name": "x"}, headers=RW).status_code == 201
    # a search is a POST that reads: a read-only key may run it
    response = client.post("/api/v1/collections/x/search", json={"image_id": 1}, headers=RO)
    assert response.status_code == 404 and "no image 1" in _error(response, 404)
    assert "read-only" in _error(client.delete("/api/v1/images/1", headers=RO), 403)


def test_the_api_refuses_to_start_without_keys(tmp_path, tiny_model) -> None:
    from api import create_app
    from dinoseek.settings import SettingsError

    with pytest.raises(SettingsError, match="DINOSEEK_API_KEYS is not set"):
        create_app(_settings(tmp_path, tiny_model, api_keys=()))
    app = create_app(_settings(tmp_path, tiny_model, api_keys=()), insecure_no_auth=True)
    assert app.test_client().get("/api/v1/collections").status_code == 200
    app.extensions["dinoseek"].close()


def test_the_api_and_workers_refuse_placeholder_and_short_secrets(tmp_path, tiny_model, monkeypatch, capsys) -> None:
    """Issue 17, finding 1: a key or password from .env.example (``change-me…``) or shorter than
    16 characters stops the API and a worker at start, naming the setting, never the secret."""
    from api import create_app
    from dinoseek.cli import main
    from dinoseek.settings import SettingsError

    strong = "0123456789abcdef0123"
    for changes, named in (({"api_keys": ("change-me-admin-key", "change-me-dashboard-key:ro")},
                            "DINOSEEK_API_KEYS entry 1 is a placeholder"),
                           ({"api_keys": (strong, "s3cret:ro")}, "DINOSEEK_API_KEYS entry 2 is shorter than 16"),
                           ({"api_keys": (strong,), "qdrant_api_key": "change-me-qdrant-api-key"},
                            "DINOSEEK_QDRANT_API_KEY is a placeholder"),
                           ({"api_keys": (strong,), "database_url": "postgresql://dinoseek:hunter2@127.0.0.1/x"},
                            "the password in DINOSEEK_DATABASE_URL is shorter"),
                           ({"api_keys": (strong,), "broker_url": "redis://:Change-Me-redis@127.0.0.1:6379/0"},
                            "the password in DINOSEEK_BROKER_URL is a placeholder")):
        with pytest.raises(SettingsError, match=named) as refused:
            create_app(_settings(tmp_path, tiny_model, **changes))
        assert "openssl rand -hex 24" in str(refused.value)
        assert not any(secret in str(refused.value) for secret in ("change-me-admin", "s3cret", "hunter2"))
    for key in [k for k in os.environ if k.startswith("DINOSEEK_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DINOSEEK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DINOSEEK_API_KEYS", "short-key")
    for command in (["serve", "--port", "1"], ["worker"]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert "DINOSEEK_API_KEYS entry 1 is shorter than 16" in err and "Traceback" not in err, command


def test_errors_are_json_with_a_code_a_message_and_details(client) -> None:
    assert _error(client.get("/api/v1/nowhere", headers=RW), 404)
    assert _error(client.delete("/api/v1/collections", headers=RW), 405)
    assert "does not match the schema" in _error(client.post("/api/v1/collections", json={"name": "../x"}, headers=RW), 422)
    assert _error(client.post("/api/v1/collections", data="{not json", headers=RW, content_type="application/json"), 400)
    assert "no job with id 99" in _error(client.get("/api/v1/jobs/99", headers=RW), 404)
    assert "no collection named 'missing'" in _error(
        client.post("/api/v1/collections/missing/search", json={"image_id": 3}, headers=RW), 404)
    assert _error(client.post("/api/v1/collections/x/search", data="k=3", headers=RW,
                              content_type="application/x-www-form-urlencoded"), 415)
    client.post("/api/v1/collections", json={"name": "x"}, headers=RW)
    assert "exists" in _error(client.post("/api/v1/collections", json={"name": "x"}, headers=RW), 409)
    assert "cursor" in _error(client.get("/api/v1/collections/x/duplicates?cursor=%C2%B2", headers=RW), 400)
    assert _error(client.post("/api/v1/collections/x/search", headers=RW,
                              json={"image_id": 1, "path_prefix": "/a\u0000b"}), 422)
    mixed = client.post("/api/v1/collections/x/search", headers=RW, json={
        "image_id": 1, "taken_after": "2020-01-01T00:00:00Z", "taken_before": "2021-01-01T00:00:00"})
    assert "no image 1" in _error(mixed, 404)  # an aware and a naive date compare (naive = UTC)
    response = client.post("/api/v1/collections/x/search", json={"image_id": 1, "k": 0}, headers=RW)
    assert "k" in _error(response, 422) and "k" in response.get_json()["error"]["details"]["fields"]


def test_upload_index_search_check_scan_and_delete(client) -> None:
    photos = {f"{n}.jpg": _jpeg(skimage_photo(n)) for n in NAMES}
    job = _upload(client, "lib", photos)
    assert (job["status"], job["total"], job["done"], job["indexed"], job["failed"]) == ("succeeded", 5, 5, 5, 0)
    listing = client.get("/api/v1/collections", headers=RO).get_json()["collections"]
    assert [(c["name"], c["images"], c["indexed"], c["vectors"]) for c in listing] == [("lib", 5, 5, 5)]

    # search by an edited copy (smaller, recompressed): its original comes first, with the client's file name
    copy = skimage_photo("rocket")
    copy = _jpeg(copy.resize((copy.width // 2, copy.height // 2)), quality=60)
    response = client.post("/api/v1/collections/lib/search", headers=RO, content_type="multipart/form-data",
                           data={"image": (io.BytesIO(copy), "query.jpg"), "k": "3"})
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert len(results) == 3 and results[0]["metadata"]["filename"] == "rocket.jpg"
    assert results[0]["score"] > results[1]["score"] and results[0]["box"] is None
    rocket_id = results[0]["image_id"]
    assert Path(results[0]["path"]).is_file() and "uploads" in results[0]["path"]
    # verified against the query: its keypoints agree, and the whole original lies in the whole copy
    evidence = results[0]["evidence"]
    assert evidence["inliers"] >= 12 and evidence["query_box"][2] >= 0.9 * (skimage_photo("rocket").width // 2)
    plain = client.post("/api/v1/collections/lib/search", headers=RO, content_type="multipart/form-data",
                        data={"image": (io.BytesIO(copy), "query.jpg"), "k": "3", "verify": "false"}).get_json()
    assert [r["image_id"] for r in plain["results"]][0] == rocket_id and "evidence" not in plain["results"][0]
    refused = client.post("/api/v1/collections/lib/search", json={"image_id": rocket_id, "verify_top": 0}, headers=RO)
    assert refused.status_code == 422 and "verify_top" in refused.get_json()["error"]["message"]

    # search by id: itself left out; a threshold and a format filter narrow the results
    by_id = client.post("/api/v1/collections/lib/search", json={"image_id": rocket_id, "k": 10}, headers=RO).get_json()
    assert len(by_id["results"]) == 4 and rocket_id not in [r["image_id"] for r in by_id["results"]]
    top = by_id["results"][0]["score"]
    narrowed = client.post("/api/v1/collections/lib/search", headers=RO,
                           json={"image_id": rocket_id, "threshold": top - 1e-4}).get_json()["results"]
    assert len(narrowed) == 1
    assert client.post("/api/v1/collections/lib/search", headers=RO,
                       json={"image_id": rocket_id, "format": ["PNG"]}).get_json()["results"] == []

    # a corrupt upload fails the request, naming the file; nothing is added
    response = client.post("/api/v1/collections/lib/images", headers=RW, content_type="multipart/form-data",
                           data={"files": [(io.BytesIO(photos["coffee.jpg"]), "ok.jpg"),
                                           (io.BytesIO(b"\xff\xd8\xff garbage"), "broken.jpg")]})
    assert "broken.jpg" in _error(response, 422)
    assert client.get("/api/v1/collections", headers=RO).get_json()["collections"][0]["images"] == 5

    # duplicate check: with a cosine threshold given, the edited copy is the one near match of its
    # original, with the evidence; anything else it returns is a similar match below that threshold
    check = client.post("/api/v1/collections/lib/duplicates/check", headers=RO, content_type="multipart/form-data",
                        data={"image": (io.BytesIO(copy), "query.jpg"), "threshold": "0.8"}).get_json()
    assert check["threshold"] == 0.8 and check["verdict_model"].startswith("descriptor threshold")
    near = [m for m in check["matches"] if m["verdict"] == "near"]
    assert [m["image_id"] for m in near] == [rocket_id] and near[0]["evidence"]["descriptor"] >= 0.8
    assert 0 <= near[0]["evidence"]["hash"] <= 1 and check["matches"][0]["verdict"] == "near"
    assert all(m["verdict"] == "similar" and m["score"] < 0.8 for m in check["matches"][1:])

    # uploading the copy (and bytes already stored: one file, one row), then scanning; groups page by page
    _upload(client, "lib", {"rocket_copy.jpg": copy, "coffee_again.jpg": photos["coffee.jpg"]})
    assert client.get("/api/v1/collections", headers=RO).get_json()["collections"][0]["images"] == 6
    response = client.post("/api/v1/collections/lib/duplicates/scan", json={"threshold": 0.8}, headers=RW)
    assert response.status_code == 202
    scan = _wait(client, response.get_json()["job"])
    assert scan["status"] == "succeeded" and scan["done"] == scan["total"]  # pairs verified
    groups, cursor, pages = [], None, 0
    while True:
        page = client.get("/api/v1/collections/lib/duplicates?limit=1" + (f"&cursor={cursor}" if cursor else ""),
                          headers=RO).get_json()
        groups += page["groups"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == len(groups) >= 1 and len({g["id"] for g in groups}) == len(groups)
    near = [g for g in groups if rocket_id in g["image_ids"] and g["kind"] == "near"]
    assert len(near) == 1 and len(near[0]["image_ids"]) == 2 and near[0]["evidence"]["descriptor"] >= 0.8
    assert _error(client.get("/api/v1/collections/lib/duplicates?cursor=abc", headers=RO), 400)

    # image: describe, thumbnail, delete (gone from results)
    image = client.get(f"/api/v1/images/{rocket_id}", headers=RO).get_json()
    assert image["metadata"]["filename"] == "rocket.jpg" and image["status"] == "indexed"
    thumb = client.get(f"/api/v1/images/{rocket_id}/thumbnail?size=64", headers=RO)
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert max(PILImage.open(io.BytesIO(thumb.data)).size) == 64
    assert client.delete(f"/api/v1/images/{rocket_id}", headers=RW).status_code == 200
    assert _error(client.get(f"/api/v1/images/{rocket_id}", headers=RO), 404)
    after = client.post("/api/v1/collections/lib/search", headers=RO, content_type="multipart/form-data",
                        data={"image": (io.BytesIO(copy), "query.jpg"), "k": "10"}).get_json()["results"]
    assert rocket_id not in [r["image_id"] for r in after]

    metrics = client.get("/api/v1/metrics", headers=RO).get_data(as_text=True)
    assert 'dinoseek_http_request_duration_seconds_bucket{' in metrics
    assert 'dinoseek_jobs{kind="index",status="succeeded"} 2.0' in metrics
    assert 'dinoseek_collection_vectors{collection="lib"} 5.0' in metrics


def test_server_paths_only_under_the_allowed_roots(client, tmp_path) -> None:
    served = tmp_path / "served"
    (served / "photos").mkdir(parents=True)
    for name in NAMES[:2]:
        skimage_photo(name).save(served / "photos" / f"{name}.jpg")
    (tmp_path / "private").mkdir()
    skimage_photo("camera").save(tmp_path / "private" / "camera.jpg")
    os.symlink(tmp_path / "private", served / "escape")

    def post(paths):
        return client.post("/api/v1/collections/srv/index-jobs", json={"paths": paths}, headers=RW)

    assert "'..'" in _error(post([f"{served}/photos/../../private"]), 403)
    assert "outside the allowed roots" in _error(post([str(tmp_path / "private")]), 403)
    assert "outside the allowed roots" in _error(post([str(served / "escape")]), 403)
    assert "not absolute" in _error(post(["photos"]), 403)
    assert "does not exist" in _error(post([str(served / "nothing")]), 400)
    response = post([str(served / "photos")])
    assert response.status_code == 202
    job = _wait(client, response.get_json()["job"])
    assert (job["status"], job["indexed"]) == ("succeeded", 2)


def test_uploaded_pictures_are_indexed_again_on_request(client) -> None:
    """A collection filled by uploads has no server folder to index: ``uploads: true`` indexes its
    uploaded pictures, which finds features of an older extractor again (after an upgrade)
    without embedding anything; a collection with no uploads, or a request naming nothing, is refused."""
    first = _upload(client, "up", {f"{n}.jpg": _jpeg(skimage_photo(n)) for n in NAMES[:2]})
    assert (first["status"], first["indexed"]) == ("succeeded", 2)
    with client.application.extensions["dinoseek"].library.catalog.session() as s:
        s.execute(update(ImageFeatures).values(extractor=1))  # as stored before an upgrade
    response = client.post("/api/v1/collections/up/index-jobs", json={"uploads": True}, headers=RW)
    assert response.status_code == 202, response.get_json()
    job = _wait(client, response.get_json()["job"])
    assert (job["status"], job["indexed"], job["skipped"], job["features_refreshed"]) == ("succeeded", 0, 2, 2)
    assert "no uploaded pictures" in _error(client.post("/api/v1/collections/never/index-jobs", json={"uploads": True},
                                                        headers=RW), 404)
    assert "uploads: true" in _error(client.post("/api/v1/collections/up/index-jobs", json={}, headers=RW), 422)


def test_request_size_limit(tmp_path, tiny_model) -> None:
    from api import create_app

    app = create_app(_settings(tmp_path, tiny_model, max_upload_mb=1))
    big = _jpeg(PILImage.effect_noise((1200, 1200), 60).convert("RGB"), quality=100)
    assert len(big) > 1024 * 1024
    response = app.test_client().post("/api/v1/collections/c/images", headers=RW, content_type="multipart/form-data",
                                      data={"files": [(io.BytesIO(big), "big.jpg")]})
    assert "larger than the limit" in _error(response, 413)
    app.extensions["dinoseek"].close()


def test_collections_are_listed_a_page_at_a_time(client) -> None:
    for name in ("c", "a", "b"):
        assert client.post("/api/v1/collections", json={"name": name}, headers=RW).status_code == 201
    first = client.get("/api/v1/collections?limit=2", headers=RO).get_json()
    assert [c["name"] for c in first["collections"]] == ["a", "b"] and first["next_cursor"] == "b"
    rest = client.get(f"/api/v1/collections?limit=2&cursor={first['next_cursor']}", headers=RO).get_json()
    assert [c["name"] for c in rest["collections"]] == ["c"] and rest["next_cursor"] is None
    assert _error(client.get("/api/v1/collections?limit=0", headers=RO), 422)


def test_serve_refuses_to_start_without_keys(tmp_path, tiny_model, monkeypatch, capsys) -> None:
    from dinoseek.cli import main

    for key in [k for k in os.environ if k.startswith("DINOSEEK_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DINOSEEK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DINOSEEK_MODEL", str(tiny_model))
    assert main(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "DINOSEEK_API_KEYS is not set" in err and "--insecure-no-auth" in err and "Traceback" not in err
