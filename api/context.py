"""What the routes share in one API process: the settings, the ``Library``, and how jobs start."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from flask import current_app

from dinoseek.settings import Settings
from indexer.library import Library

log = logging.getLogger(__name__)


@dataclass
class ApiContext:
    """One per app. Jobs go to the workers when a broker is configured, else to one background thread
    of this process (the embedded mode: one writer, jobs run in the order they came)."""

    settings: Settings
    library: Library
    _executor: ThreadPoolExecutor | None = None
    _celery: object = None
    _futures: list[Future] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _app(self):
        with self._lock:
            if self._celery is None:
                from workers.app import create_celery

                self._celery = create_celery(self.settings)
            return self._celery

    def _send(self, task: str, args: list) -> None:
        self._app().send_task(task, args=args)

    def _run_here(self, fn, *args) -> None:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dinoseek-job")
            future = self._executor.submit(fn, *args)
            future.add_done_callback(_log_failure)
            self._futures = [f for f in self._futures if not f.done()] + [future]

    def start_index_job(self, job_id: int) -> None:
        from indexer.indexing import fail_job, job_token, run_job_here

        if not self.settings.broker_url:
            self._run_here(run_job_here, self.library, job_id)
            return
        try:
            self._send("dinoseek.plan", [job_id, job_token(self.library, job_id)])
        except Exception as exc:
            fail_job(self.library, job_id, f"could not queue the job: {type(exc).__name__}: {exc}")
            raise

    def start_duplicates_job(self, job_id: int) -> None:
        from indexer.duplicate_jobs import run_duplicates_job

        if not self.settings.broker_url:
            self._run_here(run_duplicates_job, self.library, job_id)
        else:
            self._send("dinoseek.duplicates_job", [job_id])

    def embed_on_worker(self, data: bytes, filename: str, timeout: float = 60.0):
        """A query picture's vector, computed on the gpu queue (``DINOSEEK_QUERY_EMBEDDING=gpu``)."""
        import base64

        import numpy as np

        from api.errors import ApiError
        from indexer.errors import ModelMismatch, UnusableImage

        result = self._app().send_task("dinoseek.embed_query", args=[base64.b64encode(data).decode(), filename])
        try:
            answer = result.get(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - no worker, a timeout, or a worker error
            raise ApiError(503, f"the gpu workers did not embed the query in {timeout:.0f} s "
                                f"({type(exc).__name__}); is a worker serving the gpu queue?") from exc
        finally:
            result.forget()
        if "error" in answer:
            raise UnusableImage(answer["error"])
        expected = getattr(self.library.embedder.vit, "checkpoint_digest", None)
        if answer.get("digest") != expected:
            raise ModelMismatch(f"the gpu workers run model {str(answer.get('digest'))[:12]}, this API "
                                f"{str(expected)[:12]}: configure the same DINOSEEK_MODEL on both")
        return np.asarray([answer["vector"]], dtype=np.float32)

    def wait_for_background_jobs(self, timeout: float | None = None) -> None:
        """Block until this process's in-process jobs are done (tests, shutdown)."""
        for future in list(self._futures):
            future.exception(timeout=timeout)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.library.close()


def _log_failure(future: Future) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("background job failed: %s: %s", type(exc).__name__, exc)


def ctx() -> ApiContext:
    return current_app.extensions["dinoseek"]
