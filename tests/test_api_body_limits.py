"""Bodies that are not picture uploads are capped before they are parsed, over real HTTP: a
declared or a chunked multi-megabyte JSON body is a 413 JSON answer; uploads keep their own
limit (issue 17, finding 8)."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import httpx

from api import create_app
from dinoseek.settings import load_settings
from tests.support.services import serving


def test_large_json_bodies_are_refused_before_parsing_and_uploads_are_not(tmp_path, tiny_model) -> None:
    settings = replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                       model=str(tiny_model), api_keys=("body-limits-test-key",))
    key = {"X-API-Key": "body-limits-test-key"}
    # 3 MB of JSON: a list of 500,000 small objects the route would otherwise build
    big = json.dumps({"image_id": 1, "format": [{"x": 1}] * 500_000}).encode()
    assert len(big) > 3_000_000
    with serving(create_app(settings)) as base:
        with httpx.Client(timeout=30, headers=key) as client:
            assert client.post(f"{base}/collections", json={"name": "c"}).status_code == 201
            declared = client.post(f"{base}/collections/c/search", content=big,
                                   headers={"Content-Type": "application/json"})
            assert declared.status_code == 413, declared.text
            assert "multipart" in declared.json()["error"]["message"]

            def chunks():  # no Content-Length: the cap applies while the body is read
                for start in range(0, len(big), 64 * 1024):
                    yield big[start:start + 64 * 1024]

            chunked = client.post(f"{base}/collections/c/search", content=chunks(),
                                  headers={"Content-Type": "application/json"})
            assert chunked.status_code == 413, chunked.text
            # a small JSON body and a 3 MB multipart upload still reach their route
            assert client.post(f"{base}/collections/c/search", json={"image_id": 1}).status_code == 404
            upload = client.post(f"{base}/collections/c/search",
                                 files={"image": ("big.jpg", io.BytesIO(b"\xff" * 3_000_000), "image/jpeg")})
            assert upload.status_code == 422, upload.text  # not a picture, but not refused for its size
