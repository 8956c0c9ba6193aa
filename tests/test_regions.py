"""Region queries: the window geometry, and a region pasted onto another photo found in its source."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.support.photos import skimage_photo

NAMES = ("coffee", "rocket", "astronaut", "chelsea", "camera", "coins")


def _unit(shape, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_a_planted_sub_grid_is_found_where_it_is() -> None:
    from indexer.query.regions import match_grid, window_scores

    target = _unit((8, 6, 32), 0)
    query = target[2:5, 1:4]
    scores = window_scores(query, target)
    assert scores.shape == (6, 4) and np.unravel_index(np.argmax(scores), scores.shape) == (2, 1)
    assert scores.max() == pytest.approx(1.0, abs=1e-5)
    score, cells = match_grid([_unit((2, 2, 32), 1), query, _unit((4, 4, 32), 2)], target)
    assert cells == (2, 1, 3, 3) and score == pytest.approx(1.0, abs=1e-5)
    assert window_scores(_unit((9, 2, 32), 3), target) is None  # taller than the target


def test_a_region_shares_its_patches_with_its_source_and_verifies_on_stored_features_alone() -> None:
    """The third candidate order and the verification need no file: a fifth of the astronaut photo,
    resized, shares more ORB patches with the astronaut's stored keypoints than with any other
    photo's, and its stored grey levels show the region where it was cut; the others' do not."""
    from PIL import Image as PILImage

    from indexer.ingest import local_features
    from indexer.query.regions import shared_patch_counts, verify_hits
    from indexer.query.search import SearchHit

    stored = {}
    for i, name in enumerate(NAMES):
        photo = skimage_photo(name)
        stored[i] = local_features.decode(local_features.encode(local_features.extract(photo)))
    source = skimage_photo("astronaut")
    truth = [source.width // 2, source.height // 5, source.width // 2 + source.width * 2 // 5,
             source.height // 5 + source.height // 2]
    crop = source.crop(tuple(truth)).resize((int((truth[2] - truth[0]) * 0.8), int((truth[3] - truth[1]) * 0.8)),
                                           PILImage.Resampling.BICUBIC)
    box_grey = np.asarray(crop.convert("L"))
    counts = shared_patch_counts(box_grey, list(stored), stored)
    astronaut = NAMES.index("astronaut")
    assert counts[astronaut] > max(c for i, c in counts.items() if i != astronaut), counts
    hits = [SearchHit(i, f"{name}.jpg", 0.1, [0, 0, 1, 1], {"width": skimage_photo(name).width,
                                                           "height": skimage_photo(name).height})
            for i, name in enumerate(NAMES)]
    verify_hits(box_grey, hits, stored)
    assert [h.image_id for h in hits if h.score > 1.0] == [astronaut], [(h.image_id, h.score) for h in hits]
    assert _iou(hits[astronaut].box, truth) >= 0.8, (hits[astronaut].box, truth)


def test_cells_become_pixel_boxes_and_bad_boxes_are_refused() -> None:
    from indexer.errors import InvalidRequest
    from indexer.query.boxes import check_box
    from indexer.query.regions import cells_to_box

    assert cells_to_box((2, 1, 3, 3), 8, 6, 600, 800) == [100, 200, 400, 500]
    assert check_box([-10, -5, 50, 40], 100, 100) == [0, 0, 50, 40]  # clipped to the picture
    with pytest.raises(InvalidRequest, match="x1 > x0"):
        check_box([50, 0, 10, 40], 100, 100)
    with pytest.raises(InvalidRequest, match="less than 8x8"):
        check_box([95, 95, 140, 140], 100, 100)


def _iou(a, b) -> float:
    ix, iy = max(0, min(a[2], b[2]) - max(a[0], b[0])), max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy)


@pytest.fixture
def local_qdrant_server(monkeypatch):
    """A Qdrant "server" for the product's settings: every connect() gets one qdrant-client local
    mode instance (in memory), which the stores must not close, so it outlives each CLI command."""
    from qdrant_client import QdrantClient

    import indexer.stores.qdrant_server_store as qss

    client = QdrantClient(location=":memory:")

    class Shared:
        def __getattr__(self, name):
            return getattr(client, name)

        def close(self) -> None:
            pass

    monkeypatch.setattr(qss, "connect", lambda url, config=None, **kwargs: Shared())
    yield client
    client.close()


@pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning")
@pytest.mark.parametrize("vectors", ["faiss", "qdrant-multivector"])
def test_a_pasted_region_is_found_in_its_source_with_its_box(tmp_path, monkeypatch, capsys, request, vectors) -> None:
    """The shipped model: a quarter of the rocket photo, resized and pasted onto the cat, is found
    in the rocket photo first, verified on its stored local features with every indexed file moved
    away (score above 1: no candidate's file is read), with a matched box that overlaps the part
    that was cut (IoU >= 0.5, the issue's bar). The same with the patch cells in a Qdrant server's
    multivector layout (candidates by MAX_SIM instead of votes)."""
    import os

    from dinoseek.cli import main

    library = tmp_path / "lib"
    library.mkdir()
    for name in NAMES:
        skimage_photo(name).save(library / f"{name}.jpg", quality=90)
    rocket = skimage_photo("rocket")
    truth = [rocket.width // 4, rocket.height // 8, rocket.width // 4 + rocket.width // 2, rocket.height // 8 + rocket.height // 2]
    region = rocket.crop(tuple(truth)).resize((int(rocket.width / 2 * 0.9), int(rocket.height / 2 * 0.9)))
    composite = skimage_photo("chelsea").resize((600, 420))
    composite.paste(region, (240, 60))
    composite.save(tmp_path / "query.jpg", quality=92)
    box = [240, 60, 240 + region.width, 60 + region.height]

    for key in [k for k in os.environ if k.startswith("DINOSEEK_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DINOSEEK_HOME", str(tmp_path / "home"))
    if vectors == "qdrant-multivector":
        server = request.getfixturevalue("local_qdrant_server")
        monkeypatch.setenv("DINOSEEK_VECTOR_BACKEND", "qdrant")
        monkeypatch.setenv("DINOSEEK_QDRANT_URL", "http://qdrant.invalid:6333")
        monkeypatch.setenv("DINOSEEK_QDRANT_PATCH_LAYOUT", "multivector")
    assert main(["index", str(library), "--collection", "c", "--json"]) == 0
    capsys.readouterr()
    if vectors == "qdrant-multivector":  # one point per image, holding its cells
        assert server.get_collection("c.patches").config.params.vectors.multivector_config is not None
        assert server.count("c.patches").count == len(NAMES)
        from indexer.stores.qdrant_multivector_store import QdrantMultivectorStore

        def no_votes(*args, **kwargs):
            raise AssertionError("region candidates must come from MAX_SIM, not per-cell votes")

        monkeypatch.setattr(QdrantMultivectorStore, "search", no_votes)
    library.rename(tmp_path / "away")
    assert main(["search", str(tmp_path / "query.jpg"), "--box", ",".join(map(str, box)), "--collection", "c",
                 "-k", "3", "--json"]) == 0
    (query,) = json.loads(capsys.readouterr().out)["queries"]
    assert query["box"] == box
    top = query["results"][0]
    assert Path(top["path"]).name == "rocket.jpg", query["results"]
    hit = top["box"]
    covered = max(0, min(hit[2], truth[2]) - max(hit[0], truth[0])) * max(0, min(hit[3], truth[3]) - max(hit[1], truth[1]))
    truth_area, hit_area = (truth[2] - truth[0]) * (truth[3] - truth[1]), (hit[2] - hit[0]) * (hit[3] - hit[1])
    assert covered / truth_area >= 0.75 and hit_area <= 3 * truth_area, (hit, truth)
    assert _iou(hit, truth) >= 0.5, (hit, truth)
    assert top["score"] > 1.0 and all(r["score"] < 1.0 for r in query["results"][1:]), query["results"]
    assert all(r["box"] is not None and len(r["box"]) == 4 for r in query["results"])
    scores = [r["score"] for r in query["results"]]
    assert scores == sorted(scores, reverse=True)
    assert main(["search", str(tmp_path / "query.jpg"), "--box", ",".join(map(str, box)), "--collection", "c",
                 "--threshold", "0.5"]) == 2
    assert "--threshold does not apply to region queries" in capsys.readouterr().err


def test_region_route(tmp_path, tiny_model) -> None:
    import io

    from api import create_app
    from dinoseek.settings import load_settings
    from indexer.jobs import index_paths

    (tmp_path / "lib").mkdir()
    for name in NAMES[:3]:
        skimage_photo(name).save(tmp_path / "lib" / f"{name}.jpg")
    settings = replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/home/c.db",
                       model=str(tiny_model), api_keys=("regions-test-key-0123",))
    app = create_app(settings)
    index_paths(app.extensions["dinoseek"].library, "c", [tmp_path / "lib"])
    client = app.test_client()
    headers = {"X-API-Key": "regions-test-key-0123"}
    buf = io.BytesIO()
    skimage_photo("coffee").save(buf, "JPEG")
    response = client.post("/api/v1/collections/c/search/region", headers=headers, content_type="multipart/form-data",
                           data={"image": (io.BytesIO(buf.getvalue()), "q.jpg"), "box": "100,50,300,250", "k": "2"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["box"] == [100, 50, 300, 250] and len(body["results"]) == 2
    assert all(len(r["box"]) == 4 for r in body["results"])
    by_id = client.post("/api/v1/collections/c/search/region", headers=headers,
                        json={"image_id": body["results"][0]["image_id"], "box": [0, 0, 120, 120]}).get_json()
    assert body["results"][0]["image_id"] not in [r["image_id"] for r in by_id["results"]]
    missing_box = client.post("/api/v1/collections/c/search/region", headers=headers, json={"image_id": 1})
    assert missing_box.status_code == 422 and "box" in missing_box.get_json()["error"]["message"]
    infinite = client.post("/api/v1/collections/c/search/region", headers=headers,
                           data='{"image_id": 1, "box": [0, 0, Infinity, 9]}', content_type="application/json")
    assert infinite.status_code == 422 and "finite" in infinite.get_json()["error"]["message"]
    tiny = client.post("/api/v1/collections/c/search/region", headers=headers, json={"image_id": 1, "box": [0, 0, 3, 3]})
    assert tiny.status_code == 400 and "less than 8x8" in tiny.get_json()["error"]["message"]
    app.extensions["dinoseek"].close()
