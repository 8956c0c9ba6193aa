"""Jobs: progress and per-file errors of index, re-index and duplicate-scan jobs."""

from __future__ import annotations

from flask_smorest import Blueprint

from api.context import ctx
from api.schemas import ErrorResponse, JobOut
from indexer.jobs import job_json

blp = Blueprint("jobs", __name__, description="Jobs started by other routes")


@blp.route("/jobs/<int(max=9223372036854775807):job_id>", methods=["GET"])
@blp.response(200, JobOut)
@blp.alt_response(404, schema=ErrorResponse)
def get_job(job_id: int):
    """A job's status, counters and per-file errors."""
    return job_json(ctx().library, job_id)
