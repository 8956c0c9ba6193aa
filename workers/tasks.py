"""Celery tasks: thin wrappers over the ``indexer`` job functions, run in worker processes.

An index or re-index job flows as ``dinoseek.plan`` (cpu queue: walk, stat, rows, chunks) →
one ``dinoseek.chunk`` per chunk (gpu queue: read, hash, decode, embed, write vectors) → the
chunk that finds no other pending closes the job (prune or generation swap). Every task is safe
to run twice, so a redelivered message costs time, never correctness. Errors of the database,
Redis or a vector store are retried with exponential backoff; a bad file is not an error here
(it fails alone, recorded in the job); a bad request fails the job with its message.

Each worker process loads the model once (``worker_process_init``: after the fork, never in the
parent, where a torch operation before forking deadlocks the children) and opens a fresh
``Library`` per task, so embedded stores are only held while written.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from celery import shared_task
from celery.signals import worker_process_init

if TYPE_CHECKING:
    from dinoseek.settings import Settings

log = logging.getLogger(__name__)
MAX_RETRIES = 10
RETRY_BACKOFF_MAX = 60.0  # seconds; retries wait 1, 2, 4, ... seconds up to this, with jitter

_state: dict = {"other_embedders": {}}


def bind_settings(settings: Settings) -> None:
    """The settings every task of this process uses (set when the app is created)."""
    _state["settings"] = settings


def _embedder():
    """This process's model, loaded on first use and kept for every later task."""
    if "embedder" not in _state:
        from indexer.library import Library

        library = Library(_state["settings"])
        _state["embedder"] = library.embedder
        library.close()
    return _state["embedder"]


@worker_process_init.connect
def _load_model_in_child(**_) -> None:
    if "settings" in _state:
        try:
            _embedder()
        except Exception:  # noqa: BLE001 - the database may be down at start; the first task retries
            log.exception("could not load the model at worker start; tasks will try again")


def _library():
    from indexer.library import Library

    return Library(_state["settings"], embedder=_embedder(), other_embedders=_state["other_embedders"])


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors worth retrying: the database, the broker or a vector store was unreachable."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

    from indexer.catalog.database import CatalogError
    from indexer.stores import StoreError

    return (OperationalError, InterfaceError, DisconnectionError, RedisConnectionError, RedisTimeoutError, StoreError, CatalogError,
            ConnectionError, TimeoutError)


def _run_retrying(task, job_id: int, work):
    """Run ``work(library)``; retry transient errors with backoff, fail the job on anything else."""
    from indexer.errors import IndexerError
    from indexer.indexing import fail_job

    library = None
    try:
        library = _library()
        return work(library)
    except IndexerError as exc:  # a bad request (missing path, other model): retrying cannot help
        _fail_quietly(library, job_id, str(exc), fail_job)
        return None
    except transient_errors() as exc:
        if task.request.retries >= MAX_RETRIES:
            _fail_quietly(library, job_id, f"gave up after {MAX_RETRIES} retries: {type(exc).__name__}: {exc}",
                          fail_job)
            raise
        delay = min(RETRY_BACKOFF_MAX, 2.0 ** task.request.retries)
        log.warning("job %s: %s: %s; retrying in %.0f s", job_id, type(exc).__name__, exc, delay)
        raise task.retry(exc=exc, countdown=delay, max_retries=MAX_RETRIES) from exc
    except Exception as exc:  # a bug, not the input: fail the job visibly rather than leave it running
        _fail_quietly(library, job_id, f"{type(exc).__name__}: {exc}", fail_job)
        raise
    finally:
        if library is not None:
            library.close()


def _fail_quietly(library, job_id: int, message: str, fail_job) -> None:
    try:
        if library is not None:
            fail_job(library, job_id, message)
    except Exception:  # noqa: BLE001 - the database itself may be what failed
        log.exception("job %s: could not record its failure (%s)", job_id, message)


@shared_task(name="dinoseek.plan", bind=True, ignore_result=True)
def plan(self, job_id: int, token: str | None = None) -> int:
    """Plan a job into chunks and queue them on the gpu queue; returns how many were queued."""
    from indexer.indexing import job_token, plan_index

    def work(library) -> int:
        if token is not None and job_token(library, job_id) != token:
            log.error("job %s is not in this worker's catalog (%s): the worker and the client that submitted the "
                      "job must share DINOSEEK_DATABASE_URL (or DINOSEEK_HOME); ignoring it", job_id,
                      library.catalog.engine.url.render_as_string())
            return 0
        chunk_ids = plan_index(library, job_id)
        for chunk_id in chunk_ids:
            chunk.apply_async((job_id, chunk_id))
        if not chunk_ids:  # nothing to embed (or all done already): close it here
            _finish(library, job_id)
        return len(chunk_ids)

    return _run_retrying(self, job_id, work) or 0  # progress lives in the catalog, not in results


@shared_task(name="dinoseek.chunk", bind=True, ignore_result=True)
def chunk(self, job_id: int, chunk_id: int) -> bool:
    """Embed one chunk and commit it (once); the last chunk closes the job. False if already done."""
    from indexer.index_run import run_chunk

    def work(library) -> bool:
        ran = run_chunk(library, job_id, chunk_id)
        _finish(library, job_id)
        return ran

    return bool(_run_retrying(self, job_id, work))


def _finish(library, job_id: int) -> None:
    from indexer.catalog.models import Collection, Job
    from indexer.indexing import finish_job

    with library.catalog.session() as s:
        job = s.get(Job, job_id)
        name = s.get(Collection, job.collection_id).name
    with library.writer_lock(name):  # prune and swap write the stores
        finish_job(library, job_id)
        library.release_stores(name)


@shared_task(name="dinoseek.duplicates_job", bind=True, ignore_result=True)
def duplicates_job(self, job_id: int) -> None:
    """A duplicate scan job (the API's ``duplicates/scan``): groups saved in the catalog."""
    from indexer.duplicate_jobs import run_duplicates_job

    _run_retrying(self, job_id, lambda library: run_duplicates_job(library, job_id))


@shared_task(name="dinoseek.embed_query")
def embed_query(data_b64: str, filename: str) -> dict:
    """Embed a query picture on a GPU worker (``DINOSEEK_QUERY_EMBEDDING=gpu``): decoded exactly as
    indexing decodes. Returns the vector and the model digest, or the decoding error."""
    import base64

    from indexer.ingest.reading import FileStat, decode_bytes
    from model.preprocess import ImageDecodeError

    embedder = _embedder()
    data = base64.b64decode(data_b64)
    try:
        loaded = decode_bytes(filename, data, FileStat(len(data), 0), _state["settings"].max_image_pixels,
                              target_long_side=embedder.image_size)
    except ImageDecodeError as exc:
        return {"error": str(exc)}
    vector = embedder.embed([loaded.image]).vectors[0]
    return {"vector": vector.tolist(), "digest": getattr(embedder.vit, "checkpoint_digest", None)}


@shared_task(name="dinoseek.duplicates")
def duplicates(collection: str, threshold: float | None = None) -> dict:
    """``dinoseek duplicates`` on a worker (cpu queue)."""
    from indexer.duplicates import find_duplicates

    library = _library()
    try:
        return {"groups": [g.to_json() for g in find_duplicates(library, collection, threshold=threshold)]}
    finally:
        library.close()


__all__ = ["bind_settings", "chunk", "duplicates", "duplicates_job", "embed_query", "plan", "transient_errors"]
