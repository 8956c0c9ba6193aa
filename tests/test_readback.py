"""Stored paths are re-checked when files are read back (issue 17, finding 5): an indexed file
swapped for a symlink to another file, or a catalog row edited to name one, serves nothing over
HTTP; what a collection indexed, its uploads and folders indexed with --follow-symlinks still do."""

from __future__ import annotations

import io
import os
import time
from dataclasses import replace

import httpx
import pytest
from PIL import Image as PILImage
from sqlalchemy import select, update

from api import create_app
from dinoseek.settings import load_settings
from indexer.catalog.models import Image
from indexer.ingest.reading import read_bytes
from indexer.jobs import index_paths
from indexer.library import Library
from indexer.readback import Roots, read_back
from model.preprocess import ImageDecodeError
from tests.support.photos import skimage_photo
from tests.support.services import serving

KEY = {"X-API-Key": "readback-test-key-0123"}


def _library(tmp_path, tiny_model) -> Library:
    return Library(replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                           model=str(tiny_model), api_keys=(KEY["X-API-Key"],)))


def _ids(library: Library) -> dict[str, int]:
    with library.catalog.session() as s:
        return {os.path.basename(p): i for i, p in s.execute(select(Image.id, Image.path))}


@pytest.fixture
def secret(tmp_path):
    """A picture outside every indexed folder, which no key may see."""
    outside = tmp_path / "private"
    outside.mkdir()
    skimage_photo("astronaut").save(outside / "secret.jpg", quality=90)
    return outside / "secret.jpg"


def test_a_file_swapped_for_a_symlink_or_a_row_edited_to_another_file_is_not_served(tmp_path, tiny_model,
                                                                                    secret) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("coffee", "rocket", "chelsea"):
        skimage_photo(name).save(folder / f"{name}.jpg", quality=90)
    library = _library(tmp_path, tiny_model)
    index_paths(library, "lib", [folder])
    ids = _ids(library)
    (folder / "coffee.jpg").unlink()
    (folder / "coffee.jpg").symlink_to(secret)  # swapped after indexing
    with library.catalog.session() as s:  # what importing an edited export would leave
        s.execute(update(Image).where(Image.id == ids["rocket.jpg"]).values(path=str(secret)))
    settings = library.settings
    library.close()
    with serving(create_app(settings)) as base, httpx.Client(base_url=base, headers=KEY, timeout=60) as http:
        fine = http.get(f"/images/{ids['chelsea.jpg']}/thumbnail?size=64")
        assert fine.status_code == 200 and PILImage.open(io.BytesIO(fine.content)).size[0] == 64
        for name in ("coffee.jpg", "rocket.jpg"):
            answer = http.get(f"/images/{ids[name]}/thumbnail?size=64")
            assert answer.status_code == 404, answer.text
            assert f"resolves to {secret}, outside the folders this collection indexed" in answer.json()["error"]["message"]
            region = http.post("/collections/lib/search/region", json={"image_id": ids[name], "box": [0, 0, 40, 40]})
            assert region.status_code == 404 and "not read" in region.json()["error"]["message"], region.text


def test_a_file_indexed_by_name_then_swapped_for_a_symlink_is_not_served(tmp_path, tiny_model, secret) -> None:
    """A job given a file (an upload, a single path) makes that file readable, not whatever a link
    put in its place later points at."""
    folder = tmp_path / "one"
    folder.mkdir()
    skimage_photo("coffee").save(folder / "coffee.jpg", quality=90)
    library = _library(tmp_path, tiny_model)
    index_paths(library, "lib", [folder / "coffee.jpg"])
    image_id = _ids(library)["coffee.jpg"]
    (folder / "coffee.jpg").unlink()
    (folder / "coffee.jpg").symlink_to(secret)
    settings = library.settings
    library.close()
    with serving(create_app(settings)) as base, httpx.Client(base_url=base, headers=KEY, timeout=60) as http:
        answer = http.get(f"/images/{image_id}/thumbnail?size=64")
        assert answer.status_code == 404, answer.text
        assert f"resolves to {secret}" in answer.json()["error"]["message"]


def test_uploads_and_folders_indexed_following_links_are_still_read(tmp_path, tiny_model, secret) -> None:
    linked = tmp_path / "links"
    linked.mkdir()
    (linked / "via-link.jpg").symlink_to(secret)  # the owner chose to follow links here
    library = _library(tmp_path, tiny_model)
    index_paths(library, "shared", [linked], follow_symlinks=True)
    settings = library.settings
    link_id = _ids(library)["via-link.jpg"]
    library.close()
    upload = io.BytesIO()
    skimage_photo("rocket").save(upload, "JPEG", quality=90)
    with serving(create_app(settings)) as base, httpx.Client(base_url=base, headers=KEY, timeout=120) as http:
        assert http.get(f"/images/{link_id}/thumbnail?size=64").status_code == 200
        http.post("/collections", json={"name": "up"})
        job = http.post("/collections/up/images", files={"files": ("rocket.jpg", upload.getvalue(), "image/jpeg")})
        assert job.status_code == 202, job.text
        job_id = job.json()["job"]["id"]
        for _ in range(600):
            if http.get(f"/jobs/{job_id}").json()["status"] == "succeeded":
                break
            time.sleep(0.2)
        library = _library(tmp_path, tiny_model)
        (upload_id,) = [i for name, i in _ids(library).items() if name != "via-link.jpg"]
        library.close()
        assert http.get(f"/images/{upload_id}/thumbnail?size=64").status_code == 200


def test_a_link_put_in_place_after_the_check_is_not_followed(tmp_path, secret) -> None:
    """O_NOFOLLOW: a path that resolves inside the roots is opened as it resolved, never through a link."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").symlink_to(secret)
    roots = Roots((str(folder.resolve()), str(secret.parent.resolve())))
    assert read_back(str(folder / "a.jpg"), roots, 10**8, 64).info.width == 512  # resolved, read as the target
    with pytest.raises(ImageDecodeError, match="outside the folders"):
        read_back(str(folder / "a.jpg"), Roots((str(folder.resolve()),)), 10**8, 64)
    with pytest.raises(ImageDecodeError, match="is a symbolic link now; not followed"):
        read_bytes(folder / "a.jpg", 64, nofollow=True)
