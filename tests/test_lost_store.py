"""A lost vector store (its files deleted behind the catalog's back) is reported by ``collections``
and ``/health`` and repaired by the next ``dinoseek index`` of the same paths (review finding 14)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from api import create_app
from dinoseek.cli import main
from dinoseek.settings import load_settings
from tests.support.photos import skimage_photo

NAMES = ("coffee", "rocket", "astronaut", "chelsea")
KEY = "lost-store-test-key-01234"


def _run(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _collection(capsys) -> dict:
    return _run(capsys, "collections")["collections"][0]


@pytest.mark.parametrize("backend", ["faiss", "qdrant"])
def test_a_lost_store_is_reported_and_repaired_by_index(tmp_path, tiny_model, monkeypatch, capsys, backend) -> None:
    for key in list(os.environ):
        if key.startswith("DINOSEEK_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    monkeypatch.setenv("DINOSEEK_HOME", str(home))
    monkeypatch.setenv("DINOSEEK_MODEL", str(tiny_model))
    monkeypatch.setenv("DINOSEEK_VECTOR_BACKEND", backend)
    monkeypatch.setenv("DINOSEEK_API_KEYS", KEY)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in NAMES:
        skimage_photo(name).save(photos / f"{name}.jpg", quality=92)

    _run(capsys, "index", str(photos), "--collection", "lost")
    query = tmp_path / "query.jpg"
    skimage_photo("rocket").resize((300, 200)).save(query, quality=80)
    before = _run(capsys, "search", str(query), "--collection", "lost", "-k", "4")["queries"][0]["results"]
    whole = _collection(capsys)
    assert (whole["indexed"], whole["vectors"], whole["missing_vectors"], whole["missing_patch_vectors"]) == (4, 4, 0, 0)

    stores = home / "stores"
    assert any(stores.iterdir())
    shutil.rmtree(stores)  # an unmounted volume, a deleted file: the rows stay "indexed"

    lost = _collection(capsys)
    assert (lost["indexed"], lost["vectors"], lost["missing_vectors"]) == (4, 0, 4)
    assert lost["missing_patch_vectors"] > 0
    assert main(["collections"]) == 0
    assert "lacks 4 image vectors" in capsys.readouterr().out

    app = create_app(load_settings())
    try:
        answer = app.test_client().get("/api/v1/health", headers={"X-API-Key": KEY})
        assert answer.status_code == 200, answer.json  # the services answer: degraded, not down
        assert answer.json["status"] == "degraded"
        incomplete = answer.json["checks"]["collections"]["incomplete"]
        assert [(c["collection"], c["missing_vectors"]) for c in incomplete] == [("lost", 4)]
        assert app.test_client().get("/api/v1/health").json == {"status": "degraded"}
        listed = app.test_client().get("/api/v1/collections", headers={"X-API-Key": KEY}).json["collections"]
        assert listed[0]["missing_vectors"] == 4
    finally:
        app.extensions["dinoseek"].library.close()

    report = _run(capsys, "index", str(photos), "--collection", "lost")
    assert report["indexed"] == 4, report  # re-embedded, though every file is unchanged
    repaired = _collection(capsys)
    assert (repaired["vectors"], repaired["missing_vectors"], repaired["missing_patch_vectors"]) == (4, 0, 0)
    after = _run(capsys, "search", str(query), "--collection", "lost", "-k", "4")["queries"][0]["results"]
    assert Path(after[0]["path"]).name == "rocket.jpg"
    assert [(r["path"], r["verdict"]) for r in after] == [(r["path"], r["verdict"]) for r in before]

    again = _run(capsys, "index", str(photos), "--collection", "lost")
    assert (again["indexed"], again["skipped"]) == (0, 4)  # whole again: nothing re-embedded
