"""Expensive reads have a per-route limit (issue 17, finding 12): with DINOSEEK_EXPENSIVE_READS=1, a
burst of searches by picture over real HTTP gets 429 with Retry-After beyond the one running, each
429 at once rather than queued, and the slot is free again afterwards."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx

from api import create_app
from dinoseek.settings import load_settings
from indexer.jobs import index_paths
from indexer.library import Library
from tests.support.photos import skimage_photo
from tests.support.services import serving

KEY = {"X-API-Key": "limits-test-key-0123456"}


def test_a_burst_of_expensive_reads_is_limited_per_route(tmp_path, tiny_model) -> None:
    settings = replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                       model=str(tiny_model), api_keys=(KEY["X-API-Key"],), expensive_reads=1)
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("coffee", "rocket", "chelsea", "astronaut"):
        skimage_photo(name).save(folder / f"{name}.jpg", quality=90)
    library = Library(settings)
    index_paths(library, "lib", [folder])
    library.close()
    query = io.BytesIO()
    skimage_photo("coffee").crop((20, 20, 500, 380)).save(query, "JPEG", quality=80)

    def search(http: httpx.Client) -> httpx.Response:
        return http.post("/collections/lib/search", files={"image": ("q.jpg", query.getvalue(), "image/jpeg")},
                         data={"k": "3"})

    with serving(create_app(settings)) as base, httpx.Client(base_url=base, headers=KEY, timeout=120) as http:
        assert search(http).status_code == 200  # warm: the model is loaded
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda _: search(http), range(24)))
        codes = [a.status_code for a in answers]
        assert set(codes) <= {200, 429} and codes.count(429) >= 1 and codes.count(200) >= 1, codes
        refused = next(a for a in answers if a.status_code == 429)
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "too_many_requests"
        assert "DINOSEEK_EXPENSIVE_READS" in refused.json()["error"]["message"]
        assert http.get("/collections", headers=KEY).status_code == 200  # other routes are not limited
        assert search(http).status_code == 200  # the slot was given back


def test_a_job_s_errors_come_a_page_at_a_time(tmp_path, tiny_model) -> None:
    settings = replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                       model=str(tiny_model), api_keys=(KEY["X-API-Key"],))
    folder = tmp_path / "photos"
    folder.mkdir()
    skimage_photo("coffee").save(folder / "coffee.jpg")
    for n in range(5):
        (folder / f"broken{n}.jpg").write_bytes(b"\xff\xd8\xff not a picture %d" % n)
    library = Library(settings)
    job_id = index_paths(library, "lib", [folder]).job_id
    library.close()
    with serving(create_app(settings)) as base, httpx.Client(base_url=base, headers=KEY, timeout=60) as http:
        first = http.get(f"/jobs/{job_id}", params={"errors_limit": 2}).json()
        rest = http.get(f"/jobs/{job_id}", params={"errors_offset": 2, "errors_limit": 10}).json()
        assert first["failed"] == 5 and len(first["errors"]) == 2 and len(rest["errors"]) == 3
        names = [e["path"].rsplit("/", 1)[1] for e in first["errors"] + rest["errors"]]
        assert sorted(names) == [f"broken{n}.jpg" for n in range(5)]
        assert len(http.get(f"/jobs/{job_id}").json()["errors"]) == 5  # a page of 100 by default
        too_many = http.get(f"/jobs/{job_id}", params={"errors_limit": 5000})
        assert too_many.status_code == 422 and "errors_limit" in too_many.json()["error"]["message"]
