"""Near-duplicates: check a picture against a collection, scan a collection, list the groups."""

from __future__ import annotations

from flask import request
from flask_smorest import Blueprint

from api.auth import reads
from api.concurrency import limited
from api.context import ctx
from api.errors import ApiError
from api.query_params import filters_of, parse_query, upload_of, view_embedder
from api.schemas import DuplicateScan, ErrorResponse, GroupPage, GroupQuery, JobAccepted, Matches, SearchUpload
from indexer.duplicates import check_upload, list_groups
from indexer.jobs import create_duplicates_job, job_json

blp = Blueprint("duplicates", __name__, description="Near-duplicate detection")


@blp.route("/collections/<string:name>/duplicates/check", methods=["POST"])
@blp.doc(requestBody={"required": True, "content": {"multipart/form-data": {"schema": SearchUpload}}})
@blp.response(200, Matches)
@blp.alt_response(404, schema=ErrorResponse)
@blp.alt_response(422, schema=ErrorResponse)
@blp.alt_response(429, schema=ErrorResponse, description="too many of these at once; retry after Retry-After")
@reads
@limited
def check(name: str):
    """Indexed images that duplicate the picture, each with its tier (``exact``, ``near``: an
    edited copy, ``similar``: another shot of the scene) and the evidence. ``threshold``, when
    given, is a descriptor cosine that alone decides ``near`` instead of the calibrated verdict."""
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "send the picture as multipart/form-data field 'image'")
    params, picture = parse_query()
    upload = upload_of(picture)
    model, matches = check_upload(ctx().library, name, upload, params["k"], params["threshold"], filters_of(params),
                                  embed=view_embedder(upload))
    return {"threshold": params["threshold"], "verdict_model": model, "matches": [m.to_json() for m in matches]}


@blp.route("/collections/<string:name>/duplicates/scan", methods=["POST"])
@blp.arguments(DuplicateScan, location="json", required=False)
@blp.response(202, JobAccepted)
@blp.alt_response(404, schema=ErrorResponse)
def scan(body: dict, name: str):
    """Find every exact and near-duplicate group of the collection (a job; the groups replace the last scan's)."""
    context = ctx()
    job_id = create_duplicates_job(context.library, name, (body or {}).get("threshold"))
    context.jobs.start(job_id)
    return {"job": job_json(context.library, job_id)}


@blp.route("/collections/<string:name>/duplicates", methods=["GET"])
@blp.arguments(GroupQuery, location="query")
@blp.response(200, GroupPage)
@blp.alt_response(404, schema=ErrorResponse)
def groups(query: dict, name: str):
    """The groups of the last scan, a page at a time (pass ``next_cursor`` back as ``cursor``)."""
    cursor = query["cursor"]
    if cursor is not None and not (cursor.isascii() and cursor.isdecimal()):
        raise ApiError(400, f"cursor {cursor!r} is not one this API gave out")
    page, next_cursor = list_groups(ctx().library, name, after=int(cursor) if cursor else None, limit=query["limit"],
                                    kind=query["kind"])
    return {"groups": page, "next_cursor": str(next_cursor) if next_cursor is not None else None}
