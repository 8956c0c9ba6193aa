"""Jobs: progress and per-file errors of index, re-index and duplicate-scan jobs."""

from __future__ import annotations

from flask_smorest import Blueprint

from api.context import ctx
from api.schemas import ErrorResponse, JobOut, JobQuery
from indexer.jobs import cancel_job, job_json

blp = Blueprint("jobs", __name__, description="Jobs started by other routes")


@blp.route("/jobs/<int(max=9223372036854775807):job_id>", methods=["GET"])
@blp.arguments(JobQuery, location="query")
@blp.response(200, JobOut)
@blp.alt_response(404, schema=ErrorResponse)
def get_job(query: dict, job_id: int):
    """A job's status and counters, and its per-file errors a page at a time (``errors_offset``,
    ``errors_limit``; ``failed`` counts them all)."""
    return job_json(ctx().library, job_id, query["errors_offset"], query["errors_limit"])


@blp.route("/jobs/<int(max=9223372036854775807):job_id>/cancel", methods=["POST"])
@blp.response(200, JobOut)
@blp.alt_response(404, schema=ErrorResponse)
@blp.alt_response(409, schema=ErrorResponse)
def cancel(job_id: int):
    """Cancel a queued or running job of any kind (index, re-index, duplicate scan): it stops at its
    next chunk or batch, what it finished stays. 409 ``not_active`` once it has ended."""
    cancel_job(ctx().library, job_id)
    return job_json(ctx().library, job_id)
