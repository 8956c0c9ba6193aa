"""A duplicate scan as a job in chunks of pairs (issue 16, step 4): planned once, each chunk
verified and counted once, closed once, and the same groups in-process and across real cpu
workers on the Redis broker as the scan itself gives."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from sqlalchemy import select

from dinoseek.settings import load_settings
from indexer.catalog.models import Job, JobChunk
from indexer.duplicates import find_duplicates, list_groups
from indexer.errors import JobCancelled, NotActive
from indexer.jobs import cancel_job, index_paths, job_json
from indexer.jobs.duplicates import (
    create_duplicates_job,
    finish_duplicates_job,
    plan_duplicates_job,
    run_duplicates_chunk,
    run_duplicates_job,
)
from indexer.jobs.records import start_chunk
from indexer.library import Library
from model.checkpoint import DEFAULT_CHECKPOINT
from tests.support.photos import skimage_photo
from tests.support.processes import cli_json, start_worker, stop, wait_until_ready, worker_env
from workers.dispatch import JobDispatcher

NAMES = ("astronaut", "coffee", "chelsea", "rocket", "camera")


def _folder(root: Path) -> Path:
    """Five photos and three edited copies of each (a crop, a caption, a mirror image)."""
    root.mkdir(parents=True)
    for name in NAMES:
        picture = skimage_photo(name)
        picture.save(root / f"{name}.jpg", quality=90)
        w, h = picture.size
        picture.crop((w // 10, h // 12, w - w // 8, h - h // 10)).save(root / f"{name}_crop.jpg", quality=80)
        captioned = picture.copy()
        ImageDraw.Draw(captioned).text((10, h - 30), "look at this", fill=(255, 255, 255))
        captioned.save(root / f"{name}_captioned.jpg", quality=80)
        picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / f"{name}_mirror.jpg", quality=80)
    return root


def _library(root: Path, broker: str | None = None) -> Library:
    env = {"DINOSEEK_HOME": str(root / "home")}
    if broker:
        env["DINOSEEK_BROKER_URL"] = broker
    return Library(replace(load_settings(env), model=None))  # the shipped model: its verdicts want geometry


def _groups(library: Library) -> list[tuple[str, list[int]]]:
    page, _ = list_groups(library, "lib", limit=500)
    return sorted((g["kind"], g["image_ids"]) for g in page)


@pytest.fixture
def indexed(tmp_path) -> Library:
    library = _library(tmp_path)
    report = index_paths(library, "lib", [_folder(tmp_path / "photos")])
    assert report.indexed == 4 * len(NAMES)
    yield library
    library.close()


def test_a_scan_job_in_chunks_counts_each_chunk_once_and_finds_the_scans_groups(indexed) -> None:
    library = indexed
    expected = sorted((g.kind, g.image_ids) for g in find_duplicates(library, "lib", save=False))
    assert sum(kind == "near" for kind, _ in expected) == len(NAMES)  # each photo with its three copies
    job_id = create_duplicates_job(library, "lib", pairs_per_chunk=4)
    pending = plan_duplicates_job(library, job_id)
    assert len(pending) >= 3
    assert plan_duplicates_job(library, job_id) == pending  # a second delivery plans nothing more
    total = job_json(library, job_id)["total"]
    assert total >= len(pending) * 4 - 3 and job_json(library, job_id)["done"] == 0

    assert run_duplicates_chunk(library, job_id, pending[0])
    first = job_json(library, job_id)["done"]
    assert first == 4 and not run_duplicates_chunk(library, job_id, pending[0])  # run twice, counted once
    assert job_json(library, job_id)["done"] == first
    assert not finish_duplicates_job(library, job_id)  # chunks are still pending
    assert _groups(library) == []
    for chunk_id in pending[1:]:
        assert run_duplicates_chunk(library, job_id, chunk_id)
    assert finish_duplicates_job(library, job_id) and not finish_duplicates_job(library, job_id)
    done = job_json(library, job_id)
    assert (done["status"], done["done"]) == ("succeeded", total)
    assert _groups(library) == expected

    # the in-process job (every chunk on this machine's cores) gives the same
    jobs = JobDispatcher(library)
    jobs.start(create_duplicates_job(library, "lib", pairs_per_chunk=4))
    jobs.wait_for_background_jobs(timeout=120)
    assert _groups(library) == expected


def test_cpu_workers_share_a_scans_chunks(tmp_path, redis_url) -> None:
    """``dinoseek duplicates`` with a broker: a job whose chunks both workers verify."""
    folder = _folder(tmp_path / "photos")
    library = _library(tmp_path)
    index_paths(library, "lib", [folder])
    expected = sorted((g.kind, g.image_ids) for g in find_duplicates(library, "lib", save=False))
    env = worker_env(tmp_path / "home", DEFAULT_CHECKPOINT, redis_url)
    env["DINOSEEK_SCAN_PAIRS_PER_CHUNK"] = "2"
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [start_worker(env, f"w{i}", log) for i, log in enumerate(logs)]
    try:
        wait_until_ready(logs)
        found = cli_json(env, "duplicates", "--collection", "lib")
    finally:
        for w in workers:
            stop(w)
    assert sorted((g["kind"], g["image_ids"]) for g in found["groups"]) == expected
    with library.catalog.session() as s:
        job_id = s.scalar(select(Job.id).where(Job.kind == "duplicates").order_by(Job.id.desc()))
    job = job_json(library, job_id)
    assert job["status"] == "succeeded" and job["done"] == job["total"] >= 10, job
    pieces = [log.read_text().count("dinoseek.run_piece") for log in logs]
    assert all(pieces) and sum(pieces) >= job["total"] // 2, pieces  # both workers verified chunks
    library.close()


def test_a_scan_chunk_whose_worker_died_too_often_is_judged_without_geometry(indexed) -> None:
    """A chunk already started DINOSEEK_MAX_CHUNK_STARTS times (each start's process died) is
    committed unverified on its next start, with an error saying so, and the scan still closes."""
    library = indexed
    library.settings = replace(library.settings, max_chunk_starts=1)
    job_id = create_duplicates_job(library, "lib", pairs_per_chunk=4)
    first, *rest = plan_duplicates_job(library, job_id)
    assert start_chunk(library, job_id, first) == 1  # a worker took it and died
    assert run_duplicates_chunk(library, job_id, first)
    for chunk_id in rest:
        assert run_duplicates_chunk(library, job_id, chunk_id)
    assert finish_duplicates_job(library, job_id)
    with library.catalog.session() as s:
        given_up = s.get(JobChunk, first)
        assert given_up.starts == 2 and all(record[4] is None for record in given_up.results)
    doc = job_json(library, job_id)
    assert doc["status"] == "succeeded" and doc["done"] == doc["total"]
    assert [e["path"] for e in doc["errors"]] == ["(pairs of chunk 0)"]
    assert "judged without geometry" in doc["errors"][0]["error"] and "started 1 times" in doc["errors"][0]["error"]


def test_a_cancelled_scan_saves_no_groups_and_says_so(indexed) -> None:
    library = indexed
    find_duplicates(library, "lib")
    before = _groups(library)
    job_id = create_duplicates_job(library, "lib", pairs_per_chunk=4)
    pending = plan_duplicates_job(library, job_id)
    assert run_duplicates_chunk(library, job_id, pending[0])
    cancel_job(library, job_id)
    assert not run_duplicates_chunk(library, job_id, pending[1])  # a chunk delivered after the cancel does nothing
    assert not finish_duplicates_job(library, job_id)
    with pytest.raises(JobCancelled, match=f"job {job_id} was cancelled"):
        run_duplicates_job(library, job_id)
    doc = job_json(library, job_id)
    assert doc["status"] == "cancelled" and doc["done"] < doc["total"]
    assert _groups(library) == before  # the last scan's groups stay
    with pytest.raises(NotActive, match="already been cancelled"):
        cancel_job(library, job_id)
