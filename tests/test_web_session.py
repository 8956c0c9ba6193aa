"""The web app's sign-in through Flask's test client: cookie sessions opened with a key (never
holding it), CSRF tokens on every cookie write, read-only sessions, the shared cookie secret, and
pictures for the browser (ETag and 304 on thumbnails and previews, originals only from the catalog)."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.photos import skimage_photo

RW_KEY, RO_KEY = "rw-key-for-web-tests-01", "ro-key-for-web-tests-01"


def _settings(tmp_path: Path, model: Path, **changes):
    from dinoseek.settings import load_settings

    home = tmp_path / "home"
    values = {"home": home, "database_url": f"sqlite:///{home / 'dinoseek.db'}", "model": str(model),
              "api_keys": (RW_KEY, f"{RO_KEY}:ro"), "allowed_roots": (tmp_path.resolve() / "served",)}
    return replace(load_settings({}), **{**values, **changes})


@pytest.fixture
def app(tmp_path, tiny_model):
    from api import create_app

    app = create_app(_settings(tmp_path, tiny_model))
    yield app
    app.extensions["dinoseek"].close()


def _sign_in(client, key: str) -> str:
    response = client.post("/api/v1/session", json={"key": key})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["csrf_token"]


def _cookie_payload(set_cookie: str) -> dict:
    """The session cookie's (signed, not encrypted) payload, as anyone holding the cookie could read it."""
    value = set_cookie.split(";", 1)[0].split("=", 1)[1]
    compressed = value.startswith(".")
    data = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    return json.loads(zlib.decompress(raw) if compressed else raw)


def test_the_app_shell_and_its_files_need_no_key_and_allow_only_this_origin(app) -> None:
    client = app.test_client()
    page = client.get("/")
    assert page.status_code == 200 and b'type="module"' in page.data
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    for path in ("/search", "/region", "/compare", "/duplicates", "/collections", "/static/app.js", "/static/app.css"):
        assert client.get(path).status_code == 200, path
    assert client.get("/api/v1/session").get_json() == {"signed_in": False, "read_only": None, "csrf_token": None}
    assert client.get("/api/v1/collections").status_code == 401


def test_a_key_opens_a_cookie_session_that_never_holds_the_key(app) -> None:
    client = app.test_client()
    assert client.post("/api/v1/session", json={"key": "nope-nope-nope-nope"}).status_code == 401
    assert client.post("/api/v1/session", data={"key": RW_KEY}).status_code == 422  # a form post (cross-site) is refused
    response = client.post("/api/v1/session", json={"key": RW_KEY})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and cookie.startswith("dinoseek_session=")
    assert RW_KEY not in cookie and RW_KEY not in str(_cookie_payload(cookie))
    body = response.get_json()
    assert body["signed_in"] and body["read_only"] is False and len(body["csrf_token"]) >= 32
    assert client.get("/api/v1/collections").status_code == 200
    assert client.get("/api/v1/openapi.json").status_code == 200 and client.get("/api/v1/docs").status_code == 200
    assert client.get("/api/v1/session").get_json() == body  # the same token for the session's life


def test_cookie_writes_need_the_csrf_token_and_header_keys_do_not(app) -> None:
    client = app.test_client()
    token = _sign_in(client, RW_KEY)
    refused = client.post("/api/v1/collections", json={"name": "a"})
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "csrf"
    assert client.post("/api/v1/collections", json={"name": "a"}, headers={"X-CSRF-Token": "x" * 43}).status_code == 403
    # even a search (a POST that reads) needs it with the cookie
    assert client.post("/api/v1/collections/a/search", json={"image_id": 1}).status_code == 403
    assert client.post("/api/v1/collections", json={"name": "a"}, headers={"X-CSRF-Token": token}).status_code == 201
    other = app.test_client()  # a key in a header: no cookie, no CSRF token needed
    assert other.post("/api/v1/collections", json={"name": "b"}, headers={"X-API-Key": RW_KEY}).status_code == 201
    assert client.delete("/api/v1/session").status_code == 403  # signing out is a write too
    assert client.delete("/api/v1/session", headers={"X-CSRF-Token": token}).status_code == 204
    assert client.get("/api/v1/collections").status_code == 401
    assert client.post("/api/v1/collections", json={"name": "c"}, headers={"X-CSRF-Token": token}).status_code == 401


def test_a_read_only_session_reads_and_cannot_write(app) -> None:
    client = app.test_client()
    token = _sign_in(client, RO_KEY)
    assert client.get("/api/v1/session").get_json()["read_only"] is True
    assert client.get("/api/v1/collections").status_code == 200
    refused = client.post("/api/v1/collections", json={"name": "a"}, headers={"X-CSRF-Token": token})
    assert refused.status_code == 403 and "read-only" in refused.get_json()["error"]["message"]
    assert client.delete("/api/v1/session", headers={"X-CSRF-Token": token}).status_code == 204


def test_a_session_ends_when_its_key_is_removed_and_the_secret_is_shared(tmp_path, tiny_model) -> None:
    from api import create_app

    first = create_app(_settings(tmp_path, tiny_model))
    client = first.test_client()
    _sign_in(client, RO_KEY)
    secret = tmp_path / "home" / "session_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    second = create_app(_settings(tmp_path, tiny_model))  # another gunicorn worker: the same secret
    assert second.secret_key == first.secret_key
    cookie = client.get_cookie("dinoseek_session").value
    other = second.test_client()
    other.set_cookie("dinoseek_session", cookie)
    assert other.get("/api/v1/collections").status_code == 200
    revoked = create_app(_settings(tmp_path, tiny_model, api_keys=(RW_KEY,)))
    gone = revoked.test_client()
    gone.set_cookie("dinoseek_session", cookie)
    assert gone.get("/api/v1/collections").status_code == 401
    configured = create_app(_settings(tmp_path, tiny_model, session_secret="a-configured-session-secret-0123"))
    assert configured.secret_key == b"a-configured-session-secret-0123"
    for each in (first, second, revoked, configured):
        each.extensions["dinoseek"].close()


def test_thumbnails_and_originals_carry_etags_and_answer_304(app, tmp_path) -> None:
    client = app.test_client()
    key = {"X-API-Key": RW_KEY}
    client.post("/api/v1/collections", json={"name": "lib"}, headers=key)
    served = tmp_path / "served"
    served.mkdir()
    buf = io.BytesIO()
    skimage_photo("coffee").save(buf, "PNG")
    (served / "coffee.png").write_bytes(buf.getvalue())
    assert client.post("/api/v1/collections/lib/index-jobs", json={"paths": [str(served)]}, headers=key).status_code == 202
    app.extensions["dinoseek"].jobs.wait_for_background_jobs(timeout=120)
    image_id = 1
    thumb = client.get(f"/api/v1/images/{image_id}/thumbnail?size=256", headers=key)
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg" and thumb.headers["ETag"]
    again = client.get(f"/api/v1/images/{image_id}/thumbnail?size=256", headers={**key, "If-None-Match": thumb.headers["ETag"]})
    assert again.status_code == 304 and not again.data and again.headers["ETag"] == thumb.headers["ETag"]
    preview = client.get(f"/api/v1/images/{image_id}/thumbnail?size=2048", headers=key)
    assert preview.status_code == 200 and preview.headers["ETag"] != thumb.headers["ETag"]
    original = client.get(f"/api/v1/images/{image_id}/file", headers=key)
    assert original.status_code == 200 and original.mimetype == "image/png" and original.data == buf.getvalue()
    assert "sandbox" in original.headers["Content-Security-Policy"] and "coffee.png" in original.headers["Content-Disposition"]
    current = {**key, "If-None-Match": original.headers["ETag"]}
    assert client.get(f"/api/v1/images/{image_id}/file", headers=current).status_code == 304
    # a stored file swapped for a link to a file outside every readable folder is not served
    stored = client.get(f"/api/v1/images/{image_id}", headers=key).get_json()["path"]
    outside = tmp_path / "secret.png"
    outside.write_bytes(buf.getvalue())
    os.unlink(stored)
    os.symlink(outside, stored)
    refused = client.get(f"/api/v1/images/{image_id}/file", headers=key)
    assert refused.status_code == 404 and "not read" in refused.get_json()["error"]["message"]
    assert client.get("/api/v1/images/999/file", headers=key).status_code == 404
