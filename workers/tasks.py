"""Celery tasks: thin wrappers over the ``indexer`` job lifecycle, run in worker processes.

A chunked job (index, re-index) flows as ``PLAN`` (cpu queue: walk, stat, rows, chunks) → one
``CHUNK`` per chunk (gpu queue: read, hash, decode, embed, write vectors) → the chunk that finds
no other pending closes the job (prune or generation swap). A job in pieces (a duplicate scan) is
planned by ``RUN_JOB`` and its pieces (chunks of pairs) run as ``RUN_PIECE`` across the cpu
workers, the last one closing it; any other job is one ``RUN_JOB`` on the cpu queue. Every
task is safe to run twice, so a redelivered message costs time, never correctness. Errors of
the database, Redis or a vector store are retried with exponential backoff; a bad file is not
an error here (it fails alone, recorded in the job); a bad request fails the job with its message.

Each worker process loads the model once (``worker_process_init``: after the fork, never in the
parent, where a torch operation before forking deadlocks the children) and opens a fresh
``Library`` per task, so embedded stores are only held while written.
"""

from __future__ import annotations

import base64
import logging

from celery import shared_task
from celery.signals import worker_process_init
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dinoseek.settings import Settings
from indexer.catalog.database import DATABASE_UNAVAILABLE, CatalogError
from indexer.errors import IndexerError
from indexer.ingest.reading import FileStat, decode_bytes
from indexer.jobs import close_job, fail_job, job_kind, load_job, plan_job, run_job_chunk, run_job_here
from indexer.library import Library
from indexer.query import crop_windows
from indexer.stores import StoreError
from model import Embedder
from model.preprocess import ImageDecodeError
from workers import task_names

log = logging.getLogger(__name__)
MAX_RETRIES = 10
RETRY_BACKOFF_MAX = 60.0  # seconds; retries wait 1, 2, 4, ... seconds up to this, with jitter
# errors worth retrying: the database, the broker or a vector store was unreachable
TRANSIENT_ERRORS = (*DATABASE_UNAVAILABLE, RedisConnectionError, RedisTimeoutError, StoreError, CatalogError,
                    ConnectionError, TimeoutError)

_state: dict = {"other_embedders": {}}


def bind_settings(settings: Settings) -> None:
    """The settings every task of this process uses (set when the app is created)."""
    _state["settings"] = settings


def _embedder() -> Embedder:
    """This process's model, loaded on first use and kept for every later task."""
    if "embedder" not in _state:
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


def _library() -> Library:
    return Library(_state["settings"], embedder=_embedder(), other_embedders=_state["other_embedders"])


def _run_retrying(task, job_id: int, work):
    """Run ``work(library)``; retry transient errors with backoff, fail the job on anything else."""
    library = None
    try:
        library = _library()
        return work(library)
    except IndexerError as exc:  # a bad request (missing path, other model): retrying cannot help
        _fail_quietly(library, job_id, str(exc))
        return None
    except TRANSIENT_ERRORS as exc:
        if task.request.retries >= MAX_RETRIES:
            _fail_quietly(library, job_id, f"gave up after {MAX_RETRIES} retries: {type(exc).__name__}: {exc}")
            raise
        delay = min(RETRY_BACKOFF_MAX, 2.0 ** task.request.retries)
        log.warning("job %s: %s: %s; retrying in %.0f s", job_id, type(exc).__name__, exc, delay)
        raise task.retry(exc=exc, countdown=delay, max_retries=MAX_RETRIES) from exc
    except Exception as exc:  # a bug, not the input: fail the job visibly rather than leave it running
        _fail_quietly(library, job_id, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if library is not None:
            library.close()


def _fail_quietly(library: Library | None, job_id: int, message: str) -> None:
    try:
        if library is not None:
            fail_job(library, job_id, message)
    except Exception:  # noqa: BLE001 - the database itself may be what failed
        log.exception("job %s: could not record its failure (%s)", job_id, message)


@shared_task(name=task_names.PLAN, bind=True, ignore_result=True)
def plan(self, job_id: int, token: str | None = None) -> int:
    """Plan a job into chunks and queue them on the gpu queue; returns how many were queued."""
    def work(library: Library) -> int:
        job = load_job(library, job_id)
        if token is not None and job.token != token:
            log.error("job %s is not in this worker's catalog (%s): the worker and the client that submitted the "
                      "job must share DINOSEEK_DATABASE_URL (or DINOSEEK_HOME); ignoring it", job_id,
                      library.catalog.engine.url.render_as_string())
            return 0
        chunk_ids = plan_job(library, job)
        for chunk_id in chunk_ids:
            chunk.apply_async((job_id, chunk_id))
        if not chunk_ids:  # nothing to embed (or all done already): close it here
            close_job(library, job)
        return len(chunk_ids)

    return _run_retrying(self, job_id, work) or 0  # progress lives in the catalog, not in results


@shared_task(name=task_names.CHUNK, bind=True, ignore_result=True)
def chunk(self, job_id: int, chunk_id: int) -> bool:
    """Embed one chunk and commit it (once); the last chunk closes the job. False if already done."""
    def work(library: Library) -> bool:
        job = load_job(library, job_id)
        ran = run_job_chunk(library, job, chunk_id)
        close_job(library, job)
        return ran

    return bool(_run_retrying(self, job_id, work))


@shared_task(name=task_names.RUN_JOB, bind=True, ignore_result=True)
def run_job(self, job_id: int) -> None:
    """A job that is not chunked, run whole; or one in pieces (a duplicate scan), planned here and
    its pieces queued for any cpu worker."""
    def work(library: Library) -> None:
        job = load_job(library, job_id)
        pieces = job_kind(job).pieces
        if pieces is None:
            run_job_here(library, job)
            return
        piece_ids = pieces.plan(library, job_id)
        for piece_id in piece_ids:
            run_piece.apply_async((job_id, piece_id))
        if not piece_ids:  # nothing to verify (or all done already): close it here
            pieces.finish(library, job_id)

    _run_retrying(self, job_id, work)


@shared_task(name=task_names.RUN_PIECE, bind=True, ignore_result=True)
def run_piece(self, job_id: int, piece_id: int) -> bool:
    """One piece of a job in pieces, committed once; the piece that leaves none pending closes the job."""
    def work(library: Library) -> bool:
        pieces = job_kind(load_job(library, job_id)).pieces
        ran = pieces.run(library, job_id, piece_id)
        pieces.finish(library, job_id)
        return ran

    return bool(_run_retrying(self, job_id, work))


@shared_task(name=task_names.EMBED_QUERY)
def embed_query(data_b64: str, filename: str, windows: list | None = None) -> dict:
    """Embed a query picture and its content ``windows`` (shares of its sides) on a GPU worker
    (``DINOSEEK_QUERY_EMBEDDING=gpu``): decoded exactly as indexing decodes. Returns the vectors
    (the whole picture's first) and the model digest, or the decoding error."""
    embedder = _embedder()
    data = base64.b64decode(data_b64)
    try:
        loaded = decode_bytes(filename, data, FileStat(len(data), 0), _state["settings"].max_image_pixels,
                              target_long_side=embedder.image_size)
    except ImageDecodeError as exc:
        return {"error": str(exc)}
    views = [loaded.image, *crop_windows(loaded.image, [tuple(w) for w in windows or []])]
    vectors = embedder.embed(views).vectors
    return {"vectors": vectors.tolist(), "digest": getattr(embedder.vit, "checkpoint_digest", None)}


__all__ = ["TRANSIENT_ERRORS", "bind_settings", "chunk", "embed_query", "plan", "run_job"]
