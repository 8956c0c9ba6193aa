"""The Celery application, configured from the settings.

Redis is broker and result backend (``DINOSEEK_BROKER_URL``). Queues: ``gpu`` (decode, embed,
write vectors) and ``cpu`` (work that runs no forward pass, such as duplicate groups). Delivery is
crash-safe: a task is acknowledged only after it finished (``acks_late``), a worker that dies
mid-task hands it back (``reject_on_worker_lost``), and each process takes one task at a time
(prefetch 1), so a killed worker strands nothing. When a whole worker dies, Redis hands its task to
another after the visibility timeout (``DINOSEEK_VISIBILITY_TIMEOUT``, default 10 min): tasks are
one chunk each, so it can be short, and a chunk that runs twice is committed once. A task runs
at most ``DINOSEEK_TASK_TIME_LIMIT`` seconds, and a chunk started ``DINOSEEK_MAX_CHUNK_STARTS``
times without finishing fails its files on the next start instead of killing a worker forever.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from dinoseek.settings import Settings, SettingsError
from workers import task_names, tasks

GPU_QUEUE = "gpu"
CPU_QUEUE = "cpu"
QUEUES = (GPU_QUEUE, CPU_QUEUE)
ROUTES = {task_names.PLAN: {"queue": CPU_QUEUE}, task_names.CHUNK: {"queue": GPU_QUEUE},
          task_names.EMBED_QUERY: {"queue": GPU_QUEUE}, task_names.RUN_JOB: {"queue": CPU_QUEUE},
          task_names.RUN_PIECE: {"queue": CPU_QUEUE}}


def create_celery(settings: Settings) -> Celery:
    """A Celery app for these settings, with the dinoseek tasks registered."""
    if not settings.broker_url:
        raise SettingsError("DINOSEEK_BROKER_URL is not set: workers need a Redis broker "
                            "(for example redis://127.0.0.1:6379/0); without one, tasks run in-process")
    app = Celery("dinoseek", broker=settings.broker_url, backend=settings.broker_url, set_as_current=True)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue=CPU_QUEUE,
        task_routes=ROUTES,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=7 * 24 * 3600,
        task_track_started=True,
        # a task still running after this is killed with its process; its chunk is redelivered and
        # counted (indexer.jobs.records.start_chunk), so a chunk that always hangs ends failed
        task_time_limit=settings.task_time_limit,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # look for tasks of dead workers every few seconds (kombu's default sweeps every ~100 s)
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout // 2)),
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout},
        worker_hijack_root_logger=False,
    )
    tasks.bind_settings(settings)  # the tasks (shared_task) register on this app, the current one
    return app
