"""Files that are not plain pictures fail alone, with their reason, and never stall a job: a FIFO
named like a photo (an open would wait for a writer forever), a sparse file far larger than
memory, a folder named ``x.jpg`` given by name (issue 17, finding 9)."""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import pytest

from indexer.ingest.reading import read_bytes, read_image
from model.preprocess import ImageDecodeError
from tests.support.photos import skimage_photo
from tests.support.processes import cli_json, worker_env


def test_fifos_and_huge_files_fail_alone_and_the_job_ends(tmp_path, tiny_model) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    skimage_photo("coffee").save(folder / "coffee.jpg", quality=90)
    os.mkfifo(folder / "a.jpg")
    with open(folder / "huge.jpg", "wb") as f:  # 64 GB of holes: nothing on disk, everything to read
        f.truncate(64 * 1024 ** 3)
    env = worker_env(tmp_path / "home", tiny_model, None)
    report = cli_json(env, "index", str(folder), "--collection", "lib", timeout=120)  # a blocked open would hang here
    assert (report["indexed"], report["failed"]) == (1, 2), report
    reasons = {Path(e["path"]).name: e["error"] for e in report["errors"]}
    assert "not a regular file (a FIFO)" in reasons["a.jpg"]
    assert "over the 512 MB limit" in reasons["huge.jpg"] and "DINOSEEK_MAX_FILE_MB" in reasons["huge.jpg"]
    # the limit is a setting
    small = {**env, "DINOSEEK_MAX_FILE_MB": "1"}
    big_photo = folder / "big.png"
    skimage_photo("astronaut").resize((1600, 1600)).save(big_photo)
    assert big_photo.stat().st_size > 1024 * 1024
    again = cli_json(small, "index", str(big_photo), "--collection", "other", timeout=120)
    assert again["failed"] == 1 and "over the 1 MB limit" in again["errors"][0]["error"]


def test_reading_refuses_what_is_not_a_regular_file(tmp_path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "folder.jpg").mkdir()
    for name, reason in (("pipe.jpg", "a FIFO"), ("folder.jpg", "a folder")):
        with pytest.raises(ImageDecodeError, match=f"not a regular file \\({reason}\\)"):
            read_bytes(tmp_path / name)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty file"):
        read_bytes(tmp_path / "empty.jpg")


def test_optional_decoders_are_looked_for_once_a_process(tmp_path, monkeypatch) -> None:
    """Every decode asks for the optional HEIC/AVIF decoders; an import that fails (pillow-heif
    not installed) searches the whole path each time it is tried, so it is tried once."""
    skimage_photo("coffee").save(tmp_path / "coffee.jpg", quality=90)
    tried = []
    real_import = builtins.__import__

    def counting_import(name, *args, **kwargs):
        if name == "pillow_heif":
            tried.append(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", counting_import)
    for side in (None, 112, 320):
        assert read_image(tmp_path / "coffee.jpg", target_long_side=side).image.mode == "RGB"
    assert len(tried) <= 1  # none when an earlier decode of this process looked already
