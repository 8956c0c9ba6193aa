"""Jobs: index, re-index and duplicate scans, recorded in the catalog and run in-process or by workers."""

from indexer.jobs.chunks import CHECKPOINT_SECONDS, Progress, checkpoint_interval
from indexer.jobs.duplicates import create_duplicates_job
from indexer.jobs.index import create_index_job
from indexer.jobs.kinds import KINDS, vector_writing_kinds
from indexer.jobs.lifecycle import (
    close_job,
    finish_job,
    index_paths,
    job_kind,
    plan_job,
    reindex,
    run_job_chunk,
    run_job_here,
    run_job_locked,
    run_new_job_here,
)
from indexer.jobs.records import (
    DEFAULT_CHUNK_SIZE,
    STATUSES,
    IndexReport,
    JobInfo,
    JobProgress,
    cancel_job,
    fail_job,
    job_counts,
    job_json,
    job_progress,
    job_report,
    load_job,
)
from indexer.jobs.reindex import create_reindex_job

__all__ = ["CHECKPOINT_SECONDS", "DEFAULT_CHUNK_SIZE", "KINDS", "STATUSES", "IndexReport", "JobInfo", "JobProgress",
           "Progress", "cancel_job", "checkpoint_interval", "close_job", "create_duplicates_job", "create_index_job",
           "create_reindex_job", "fail_job", "finish_job", "index_paths", "job_counts", "job_json", "job_kind",
           "job_progress", "job_report", "load_job", "plan_job", "reindex", "run_job_chunk", "run_job_here",
           "run_job_locked", "run_new_job_here", "vector_writing_kinds"]
