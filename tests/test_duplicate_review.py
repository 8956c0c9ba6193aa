"""Duplicate review over real HTTP on real photos and edited copies: threshold preview and apply,
decisions (keep, discard, not a duplicate) kept across re-scans and undoable, keep rules with a
reference folder, CSV export, the trash and its restore, and the compare evidence (issue 18)."""

from __future__ import annotations

import csv
import io
import shutil
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from PIL import ImageEnhance

from api import create_app
from dinoseek.settings import load_settings
from tests.support.photos import skimage_photo
from tests.support.services import serving

RW = {"X-API-Key": "review-test-key-rw-0123"}
RO = {"X-API-Key": "review-test-key-ro-0123"}
PICTURES = 9  # the files `photos` writes


@pytest.fixture
def photos(tmp_path) -> Path:
    """Five photos and edited copies under an allowed root: coffee resized and cropped (its master
    in a folder of its own), chelsea brightened, rocket copied byte for byte."""
    root = tmp_path / "served" / "photos"
    (root / "masters").mkdir(parents=True)
    for name in ("rocket", "astronaut", "chelsea", "camera"):
        skimage_photo(name).save(root / f"{name}.jpg", quality=92)
    coffee = skimage_photo("coffee")
    coffee.save(root / "masters" / "coffee.jpg", quality=92)
    coffee.resize((coffee.width // 2, coffee.height // 2)).save(root / "coffee_small.jpg", quality=80)
    coffee.crop((40, 30, coffee.width - 40, coffee.height - 30)).save(root / "coffee_crop.jpg", quality=85)
    ImageEnhance.Brightness(skimage_photo("chelsea")).enhance(1.3).save(root / "chelsea_bright.jpg", quality=88)
    shutil.copy(root / "rocket.jpg", root / "rocket_copy.jpg")
    return root


def _settle(http: httpx.Client, answer: httpx.Response) -> dict:
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job"]["id"]
    deadline = time.monotonic() + 240
    while True:
        job = http.get(f"/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            assert job["status"] == "succeeded", job
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def _groups(http: httpx.Client, kind: str | None = None) -> list[dict]:
    page = http.get("/collections/lib/duplicates", params={"kind": kind, "limit": 500} if kind else {"limit": 500})
    assert page.status_code == 200, page.text
    return page.json()["groups"]


def _named(group: dict) -> set[str]:
    return {Path(p).name for p in group["paths"]}


def test_review_decisions_rules_trash_and_compare(tmp_path, tiny_model, photos) -> None:
    settings = replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                       model=str(tiny_model), api_keys=(RW["X-API-Key"], f"{RO['X-API-Key']}:ro"),
                       allowed_roots=(tmp_path.resolve() / "served",))
    with serving(create_app(settings)) as base, httpx.Client(base_url=base, headers=RW, timeout=120) as http:
        _settle(http, http.post("/collections/lib/index-jobs", json={"paths": [str(photos)]}))
        _settle(http, http.post("/collections/lib/duplicates/scan"))
        ids = {Path(p).name: i for g in _groups(http) for i, p in zip(g["image_ids"], g["paths"])}
        (near,) = [g for g in _groups(http, "near") if "coffee.jpg" in _named(g)]
        assert {"coffee.jpg", "coffee_small.jpg", "coffee_crop.jpg"} <= _named(near)
        assert any(_named(g) == {"rocket.jpg", "rocket_copy.jpg"} for g in _groups(http, "exact"))

        # thresholds: previewed without saving, applied, then back
        before = http.post("/collections/lib/duplicates/preview", json={"thresholds": {}}).json()
        strict = http.post("/collections/lib/duplicates/preview", json={"thresholds": {"near": 1.0}}, headers=RO)
        assert strict.status_code == 200, strict.text  # a read: a read-only key may preview
        assert strict.json()["by_kind"]["near"]["groups"] == 0 and before["by_kind"]["near"]["groups"] >= 1
        assert len(_groups(http, "near")) == before["by_kind"]["near"]["groups"]  # nothing saved by a preview
        applied = http.post("/collections/lib/duplicates/thresholds", json={"thresholds": {"near": 1.0}}).json()
        assert applied["by_kind"]["near"]["groups"] == 0 and not _groups(http, "near")
        assert http.post("/collections/lib/duplicates/thresholds", json={"thresholds": {}}).json() == before
        assert http.post("/collections/lib/duplicates/preview", json={"thresholds": {"near": 2}}).status_code == 422

        # a pair marked "not a duplicate" splits its group now and after every re-scan; undo joins it again
        other = next(n for n in _named(near) if not n.startswith("coffee"))  # the tiny model's false join
        marked = http.post("/collections/lib/duplicates/decisions", json={"decisions": [
            {"kind": "not_duplicate", "image_id": ids["coffee.jpg"], "other_image_id": ids[other]}]})
        assert marked.status_code == 201, marked.text
        decision = marked.json()["decisions"][0]

        def together(a: str, b: str) -> bool:
            return any({a, b} <= _named(g) for g in _groups(http, "near"))

        assert not together("coffee.jpg", other) and together("coffee.jpg", "coffee_crop.jpg")
        _settle(http, http.post("/collections/lib/duplicates/scan"))
        assert not together("coffee.jpg", other) and together("coffee.jpg", "coffee_small.jpg")
        listed = http.get("/collections/lib/duplicates/decisions").json()["decisions"]
        assert [(d["kind"], d["id"]) for d in listed] == [("not_duplicate", decision["id"])]
        assert http.post("/collections/lib/duplicates/decisions", headers=RO, json={"decisions": [
            {"kind": "keep", "image_id": ids["coffee.jpg"]}]}).status_code == 403
        undone = http.delete(f"/duplicates/decisions/{decision['id']}")
        assert undone.status_code == 200 and undone.json()["decision"]["id"] == decision["id"]
        assert together("coffee.jpg", other)
        assert http.delete(f"/duplicates/decisions/{decision['id']}").status_code == 404
        http.post("/collections/lib/duplicates/decisions", json={"decisions": [
            {"kind": "not_duplicate", "image_id": ids[other], "other_image_id": ids["coffee.jpg"]}]})

        # keep rules: previewed, then a reference folder wins over them, then applied as decisions
        (near,) = [g for g in _groups(http, "near") if "coffee.jpg" in _named(g)]
        rules = {"rules": [{"rule": "largest_resolution"}], "group_ids": [near["id"]]}
        (suggestion,) = http.post("/collections/lib/duplicates/keep-rules/preview", json=rules).json()["groups"]
        assert suggestion["keep"] == [ids["coffee.jpg"]] and ids["coffee_small.jpg"] in suggestion["discard"]
        smallest = {"rules": [{"rule": "largest_file"}, {"rule": "oldest"}], "group_ids": [near["id"]]}
        assert http.post("/collections/lib/duplicates/keep-rules/preview", json={
            "rules": [{"rule": "prefer_folder", "folder": str(photos)}], "group_ids": [near["id"]]}).status_code == 200
        assert http.put("/collections/lib/reference-folders", json={"folders": [str(photos / "masters")]}).json() == \
            {"folders": [str(photos / "masters")]}
        (suggestion,) = http.post("/collections/lib/duplicates/keep-rules/apply", json=smallest).json()["groups"]
        assert suggestion["keep"] == [ids["coffee.jpg"]] == suggestion["reference"]
        decided = {d["path"]: d for d in http.get("/collections/lib/duplicates/decisions").json()["decisions"]}
        assert decided[str(photos / "masters" / "coffee.jpg")]["kind"] == "keep"
        assert decided[str(photos / "coffee_crop.jpg")]["kind"] == "discard"
        assert decided[str(photos / "coffee_crop.jpg")]["rule"] == "largest_file > oldest"
        refused = http.post("/collections/lib/duplicates/decisions", json={"decisions": [
            {"kind": "discard", "image_id": ids["coffee.jpg"]}]})
        assert refused.status_code == 400 and "reference folder" in refused.json()["error"]["message"]
        exported = http.get("/collections/lib/duplicates/decisions", params={"format": "csv"})
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert {r["kind"] for r in rows} == {"keep", "discard", "not_duplicate"} and len(rows) == len(decided) == 4

        # compare: a crop is a copy with its box and matches; two other photos are not
        crop = http.get("/compare", params={"a": ids["coffee.jpg"], "b": ids["coffee_crop.jpg"]})
        assert crop.status_code == 200, crop.text
        doc = crop.json()
        assert doc["verdict"] == "copy" and doc["inliers"] >= 12 and len(doc["matches"]) >= 12, doc["inliers"]
        x0, y0, x1, y1 = doc["box_in_a"]  # where the crop lies in the master: inside it, not all of it
        assert 20 <= x0 <= 60 and 10 <= y0 <= 50 and x1 - x0 < 600
        heat = doc["heatmap"]["a"]
        assert len(heat["values"]) == heat["rows"] and all(0 <= v <= 1 for row in heat["values"] for v in row)
        assert doc["differs"]["width"] == [600, 520]
        unrelated = http.get("/compare", params={"a": ids["coffee.jpg"], "b": ids["rocket.jpg"]}, headers=RO).json()
        assert unrelated["verdict"] is None and unrelated["inliers"] < 12
        assert http.get("/compare", params={"a": ids["coffee.jpg"], "b": ids["coffee.jpg"]}).status_code == 400

        # the trash: moved inside the allowed root, gone from the index, never re-indexed, restorable
        assert http.post("/collections/lib/trash", json={"image_ids": [ids["coffee.jpg"]]}).status_code == 403
        (entry,) = http.post("/collections/lib/trash", json={"image_ids": [ids["coffee_crop.jpg"]]}).json()["entries"]
        trashed = Path(entry["trash_path"])
        assert not (photos / "coffee_crop.jpg").exists() and trashed.is_file()
        assert trashed.parent == tmp_path.resolve() / "served" / ".dinoseek-trash" / "lib"
        assert http.get(f"/images/{ids['coffee_crop.jpg']}").status_code == 404
        assert all(len(g["image_ids"]) >= 2 for g in _groups(http))  # no group left with one picture
        _settle(http, http.post("/collections/lib/index-jobs", json={"paths": [str(tmp_path / "served")]}))
        counts = {c["name"]: c for c in http.get("/collections").json()["collections"]}["lib"]
        assert counts["images"] == PICTURES - 1  # the trash folder is never walked
        assert [e["id"] for e in http.get("/collections/lib/trash").json()["entries"]] == [entry["id"]]
        restored = http.post(f"/trash/{entry['id']}/restore")
        _settle(http, restored)
        assert (photos / "coffee_crop.jpg").is_file() and not trashed.exists()
        assert http.get("/collections/lib/trash").json()["entries"] == []
        assert {c["name"]: c for c in http.get("/collections").json()["collections"]}["lib"]["indexed"] == PICTURES
        assert http.post(f"/trash/{entry['id']}/restore").status_code == 400
