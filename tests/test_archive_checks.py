"""An archive is a file anyone may edit, checksums and all (issue 17, finding 5): ``import`` and
``restore`` refuse rows that name relative paths, '..' or a bad collection name or job status, and
a job the archive caught running is recorded as interrupted, so it never blocks its collection."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from dinoseek.settings import load_settings
from indexer.archive import backup, export_collection, import_collection, restore
from indexer.archive.format import ArchiveError
from indexer.catalog.models import Job
from indexer.jobs import index_paths, job_json
from indexer.library import Library
from tests.support.photos import skimage_photo


def _library(home: Path, model: Path) -> Library:
    return Library(replace(load_settings({}), home=home, database_url=f"sqlite:///{home}/c.db", model=str(model)))


def _edited(archive: Path, copy: Path, table: str, change) -> Path:
    """A copy of the directory archive with one table's rows changed and its checksum made to match."""
    shutil.copytree(archive, copy)
    rows_file = copy / "catalog" / f"{table}.jsonl"
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    rows_file.write_text("".join(json.dumps(change(row)) + "\n" for row in rows))
    manifest = json.loads((copy / "manifest.json").read_text())
    data = rows_file.read_bytes()
    manifest["files"][f"catalog/{table}.jsonl"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


@pytest.fixture
def exported(tmp_path, tiny_model) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("coffee", "rocket"):
        skimage_photo(name).save(folder / f"{name}.jpg", quality=90)
    library = _library(tmp_path / "source", tiny_model)
    index_paths(library, "lib", [folder])
    with library.catalog.session() as s:  # a scan that was running when the archives were written
        s.add(Job(collection_id=1, kind="duplicates", status="running", params={}))
    export_collection(library, "lib", tmp_path / "lib-export")
    backup(library, tmp_path / "lib-backup")
    library.close()
    return tmp_path


@pytest.mark.parametrize(("table", "change", "refusal"), [
    ("images", lambda r: dict(r, path="photos/coffee.jpg"), "image path 'photos/coffee.jpg' is not an absolute path"),
    ("images", lambda r: dict(r, path=r["path"].replace("/photos/", "/photos/../../etc/")), "without '..'"),
    ("jobs", lambda r: dict(r, params=dict(r["params"] or {}, paths=["../"])), "indexed path '../' is not an absolute"),
    ("jobs", lambda r: dict(r, status="paused"), "job status 'paused' is not one of"),
    ("collections", lambda r: dict(r, name="../other"), "invalid collection name '../other'"),
])
def test_edited_archives_are_refused_naming_the_row(exported, tiny_model, table, change, refusal) -> None:
    for kind, load in (("export", import_collection), ("backup", restore)):
        if kind == "export" and table == "collections":
            continue  # an import names the collection itself (--as), checked as a request's name
        target = _library(exported / f"target-{kind}-{table}", tiny_model)
        try:
            edited = _edited(exported / f"lib-{kind}", exported / f"edited-{kind}-{table}-{id(change)}", table, change)
            with pytest.raises(ArchiveError, match=refusal) as raised:
                load(target, edited)
            assert f"catalog/{table}.jsonl" in str(raised.value)
            with target.catalog.session() as s:
                assert s.query(Job).count() == 0  # nothing of it entered the catalog
        finally:
            target.close()


def test_a_job_running_when_archived_is_interrupted_not_blocking(exported, tiny_model) -> None:
    """The scan running at export is recorded interrupted; so is a re-index an edited archive says
    was running (a backup refuses to run beside one), which would otherwise refuse every index."""
    def reindexing(row: dict) -> dict:
        return dict(row, kind="reindex") if row["kind"] == "duplicates" else row

    for kind, load in (("export", import_collection), ("backup", restore)):
        for edit in (None, reindexing):
            target = _library(exported / f"target-{kind}-{edit is None}", tiny_model)
            archive = exported / f"lib-{kind}"
            if edit is not None:
                archive = _edited(archive, exported / f"reindexing-{kind}", "jobs", edit)
            try:
                load(target, archive)
                with target.catalog.session() as s:
                    job_id = s.query(Job).filter(Job.kind.in_(["duplicates", "reindex"])).one().id
                doc = job_json(target, job_id)
                assert doc["status"] == "failed" and "written while this job was running" in doc["message"], doc
                report = index_paths(target, "lib", [exported / "photos"])  # an active re-index would refuse this
                assert report.skipped == 2
            finally:
                target.close()
