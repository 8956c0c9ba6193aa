"""One way to start and follow a job, for the CLI, the API and anything else that starts one.

With a broker configured (``DINOSEEK_BROKER_URL``) a recorded job is sent to the workers (a
chunked kind to the plan task, any other to the run task) and followed through its catalog row;
without one it runs in this process: the CLI's in the foreground under the collection's writer
lock, the API's on one background thread (one writer, jobs in the order they came).
"""

from __future__ import annotations

import base64
import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from celery import Celery

from dinoseek.settings import redacted_url
from indexer.errors import IndexerError, JobCancelled, ModelMismatch, Unavailable, UnusableImage
from indexer.jobs import Progress, fail_job, job_kind, job_progress, load_job, run_job_here, run_new_job_here
from indexer.library import Library
from workers import task_names
from workers.app import QUEUES, create_celery

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5
QUEUED_WARNING_SECONDS = 60.0
QUERY_TIMEOUT = 60.0  # seconds a gpu worker gets to embed a query picture


class JobDispatcher:
    """Starts and follows the jobs of one ``Library``; ``close`` waits for in-process jobs."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self.settings = library.settings
        self._celery: Celery | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._futures: list[Future] = []
        self._lock = threading.Lock()

    @property
    def distributed(self) -> bool:
        """Whether jobs go to Celery workers (a broker is configured)."""
        return bool(self.settings.broker_url)

    def celery(self) -> Celery:
        """The Celery app of this process, made on first use."""
        with self._lock:
            if self._celery is None:
                self._celery = create_celery(self.settings)
            return self._celery

    def check_workers(self) -> None:
        """Refuse to queue work that no running worker would take (the wait would never end)."""
        serving = self.celery().control.inspect(timeout=3.0).active_queues() or {}
        served = {q["name"] for queues in serving.values() for q in queues}
        missing = [q for q in QUEUES if q not in served]
        if missing:
            raise IndexerError(f"no worker is serving the {' and '.join(repr(q) for q in missing)} queue at "
                               f"{redacted_url(self.settings.broker_url)}: start one with `dinoseek worker --queues "
                               f"{','.join(missing)}`, or unset DINOSEEK_BROKER_URL to run jobs in-process")

    # ------------------------------------------------------------------ starting
    def submit(self, job_id: int) -> None:
        """Send a recorded job to the workers. A job that could not be queued is marked failed, so
        it never blocks its collection."""
        try:
            job = load_job(self.library, job_id)
            if job_kind(job).chunked:
                self.celery().send_task(task_names.PLAN, args=[job_id, job.token])
            else:
                self.celery().send_task(task_names.RUN_JOB, args=[job_id])
        except BaseException as exc:
            fail_job(self.library, job_id, f"could not queue the job: {type(exc).__name__}: {exc}")
            raise

    def start(self, job_id: int) -> None:
        """Start a recorded job and return at once: to the workers, or onto this process's job thread."""
        if self.distributed:
            self.submit(job_id)
            return
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dinoseek-job")
            future = self._executor.submit(run_job_here, self.library, load_job(self.library, job_id))
            future.add_done_callback(_log_failure)
            self._futures = [f for f in self._futures if not f.done()] + [future]

    def run(self, collection_name: str, create: Callable[[], int], *, wait: bool = True,
            progress: Progress | None = None) -> int:
        """Record a chunked job with ``create`` and see it through: on the workers (once one is
        known to serve each queue; followed until it ends unless ``wait`` is False), else here in
        the foreground, holding the collection's writer lock. Returns the job id."""
        if not self.distributed:
            return run_new_job_here(self.library, collection_name, create, progress=progress).job_id
        self.check_workers()
        job_id = create()
        self.submit(job_id)
        if wait:
            self.wait(job_id, progress)
        return job_id

    # ------------------------------------------------------------------ following
    def wait(self, job_id: int, progress: Progress | None = None) -> None:
        """Poll the catalog until the job ends; a failed job raises its message, a cancelled one JobCancelled."""
        started, warned = time.monotonic(), False
        while True:
            now = job_progress(self.library, job_id)
            if progress and now.total:
                progress(now.done, now.total)
            if now.status == "succeeded":
                return
            if now.status == "failed":
                raise IndexerError(f"job {job_id} failed: {now.message}")
            if now.status == "cancelled":
                raise JobCancelled(f"job {job_id} was cancelled; what it had finished stays")
            if now.status == "queued" and not warned and time.monotonic() - started > QUEUED_WARNING_SECONDS:
                warned = True
                print(f"job {job_id} is still queued after {QUEUED_WARNING_SECONDS:.0f} s: the workers may be busy, "
                      "or may use another catalog (they must share DINOSEEK_DATABASE_URL or DINOSEEK_HOME with this "
                      "process; their log says so)", file=sys.stderr)
            time.sleep(POLL_SECONDS)

    def wait_for_background_jobs(self, timeout: float | None = None) -> None:
        """Block until this process's in-process jobs are done (tests, shutdown)."""
        for future in list(self._futures):
            future.exception(timeout=timeout)

    # ------------------------------------------------------------------ queries on the gpu queue
    def embed_query(self, data: bytes, filename: str, windows: list | None = None,
                    timeout: float = QUERY_TIMEOUT) -> np.ndarray:
        """A query picture's vector, then those of its ``windows`` (shares of its sides), computed
        on the gpu queue (``DINOSEEK_QUERY_EMBEDDING=gpu``), decoded there exactly as indexing
        decodes; the worker must run this process's model."""
        result = self.celery().send_task(task_names.EMBED_QUERY, args=[base64.b64encode(data).decode(), filename,
                                                                      [list(w) for w in windows or []]])
        try:
            answer = result.get(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - no worker, a timeout, or a worker error
            raise Unavailable(f"the gpu workers did not embed the query in {timeout:.0f} s "
                              f"({type(exc).__name__}); is a worker serving the gpu queue?") from exc
        finally:
            result.forget()
        if "error" in answer:
            raise UnusableImage(answer["error"])
        expected = getattr(self.library.embedder.vit, "checkpoint_digest", None)
        if answer.get("digest") != expected:
            raise ModelMismatch(f"the gpu workers run model {str(answer.get('digest'))[:12]}, this process "
                                f"{str(expected)[:12]}: configure the same DINOSEEK_MODEL on both")
        return np.asarray(answer["vectors"], dtype=np.float32)

    def close(self) -> None:
        """Wait for the jobs running in this process."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)


def _log_failure(future: Future) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("background job failed: %s: %s", type(exc).__name__, exc)
