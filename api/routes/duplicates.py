"""Near-duplicates: check a picture against a collection, scan a collection, list the groups."""

from __future__ import annotations

from flask import request
from flask_smorest import Blueprint

from api.auth import reads
from api.context import ctx
from api.errors import ApiError
from api.routes.search import filters_of, parse_query, query_vector
from api.schemas import DuplicateScan, ErrorResponse, GroupPage, GroupQuery, JobAccepted, Matches, SearchUpload

blp = Blueprint("duplicates", __name__, description="Near-duplicate detection")


@blp.route("/collections/<string:name>/duplicates/check", methods=["POST"])
@blp.doc(requestBody={"required": True, "content": {"multipart/form-data": {"schema": SearchUpload}}})
@blp.response(200, Matches)
@blp.alt_response(404, schema=ErrorResponse)
@blp.alt_response(422, schema=ErrorResponse)
@reads
def check(name: str):
    """Indexed images that are copies of the picture: similarity at or above the threshold
    (default: the model's measured near-duplicate threshold)."""
    from indexer.duplicates import near_threshold
    from indexer.search import search_vectors

    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "send the picture as multipart/form-data field 'image'")
    params, picture = parse_query()
    library = ctx().library
    with library.catalog.session() as s:
        library.get_collection(s, name)
    threshold = near_threshold(library) if params["threshold"] is None else params["threshold"]
    hits = search_vectors(library, name, query_vector(picture), params["k"], threshold, filters=filters_of(params))[0]
    return {"threshold": threshold, "matches": [h.to_json(with_metadata=True) for h in hits]}


@blp.route("/collections/<string:name>/duplicates/scan", methods=["POST"])
@blp.arguments(DuplicateScan, location="json", required=False)
@blp.response(202, JobAccepted)
@blp.alt_response(404, schema=ErrorResponse)
def scan(body: dict, name: str):
    """Find every exact and near-duplicate group of the collection (a job; the groups replace the last scan's)."""
    from indexer.duplicate_jobs import create_duplicates_job
    from indexer.indexing import job_json

    context = ctx()
    job_id = create_duplicates_job(context.library, name, (body or {}).get("threshold"))
    context.start_duplicates_job(job_id)
    return {"job": job_json(context.library, job_id)}


@blp.route("/collections/<string:name>/duplicates", methods=["GET"])
@blp.arguments(GroupQuery, location="query")
@blp.response(200, GroupPage)
@blp.alt_response(404, schema=ErrorResponse)
def groups(query: dict, name: str):
    """The groups of the last scan, a page at a time (pass ``next_cursor`` back as ``cursor``)."""
    from indexer.duplicate_jobs import list_groups

    cursor = query["cursor"]
    if cursor is not None and not (cursor.isascii() and cursor.isdecimal()):
        raise ApiError(400, f"cursor {cursor!r} is not one this API gave out")
    page, next_cursor = list_groups(ctx().library, name, after=int(cursor) if cursor else None, limit=query["limit"],
                                    kind=query["kind"])
    return {"groups": page, "next_cursor": str(next_cursor) if next_cursor is not None else None}
