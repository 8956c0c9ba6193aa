"""Uploads and archives reach the disk before anything points at them (issue 17, finding 16): each
file is flushed (fsync) before its rename, and the folder holding the new entry after. The real
``os.fsync`` runs; the test records which paths it was given."""

from __future__ import annotations

import io
import os
from dataclasses import replace
from pathlib import Path

import pytest

from dinoseek.settings import load_settings
from indexer.archive import backup
from indexer.jobs import index_paths
from indexer.library import Library
from indexer.uploads import Upload, store_uploads
from tests.support.photos import skimage_photo


@pytest.fixture
def synced(monkeypatch) -> list[Path]:
    """The paths os.fsync flushes, in order (each call still flushes)."""
    seen: list[Path] = []
    real = os.fsync

    def recording(fd: int) -> None:
        seen.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    return seen


def _library(tmp_path, tiny_model) -> Library:
    return Library(replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                           model=str(tiny_model)))


def test_an_upload_and_its_new_folders_are_flushed(tmp_path, tiny_model, synced) -> None:
    data = io.BytesIO()
    skimage_photo("coffee").save(data, "JPEG", quality=90)
    library = _library(tmp_path, tiny_model)
    try:
        (path,) = store_uploads(library, "lib", [Upload("coffee.jpg", data.getvalue())])
    finally:
        library.close()
    stored = Path(path)
    assert stored.read_bytes() == data.getvalue()
    assert any(p.name.startswith(f".{stored.name}") for p in synced)  # the bytes, before the rename
    assert {stored.parent, stored.parent.parent, stored.parent.parent.parent} <= set(synced)  # the new entries


@pytest.mark.parametrize("packed", [False, True])
def test_every_file_and_folder_of_an_archive_is_flushed(tmp_path, tiny_model, synced, packed) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    skimage_photo("rocket").save(folder / "rocket.jpg")
    library = _library(tmp_path, tiny_model)
    index_paths(library, "lib", [folder])
    synced.clear()
    out = tmp_path / ("lib.tar" if packed else "lib")
    try:
        backup(library, out)
    finally:
        library.close()
    assert tmp_path in synced  # the archive's own entry in its folder
    if packed:
        assert any(p.name.startswith(".lib.tar.partial") for p in synced)
    else:  # every file and folder flushed while staged, before the staging folder takes the archive's name
        staged = [str(p) for p in synced if ".lib.partial-" in str(p)]
        for rel in (p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()):
            assert any(s.endswith(f"/{rel}") for s in staged), rel
        assert any(s.endswith("/catalog") for s in staged)
