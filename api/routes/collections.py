"""Collections: create, list, add images (uploads or server paths), re-index with another model."""

from __future__ import annotations

from flask import request
from flask_smorest import Blueprint

from api.context import ctx
from api.errors import ApiError
from api.schemas import (
    CollectionCreate,
    CollectionList,
    CollectionOut,
    CollectionQuery,
    ErrorResponse,
    ImageUpload,
    IndexJobCreate,
    JobAccepted,
    ReindexJobCreate,
)
from indexer.collections import collection_counts, create_collection
from indexer.ingest.roots import check_allowed_paths
from indexer.jobs import create_index_job, create_reindex_job, job_json
from indexer.models import model_file
from indexer.uploads import Upload, store_uploads, uploaded_folder

blp = Blueprint("collections", __name__, description="Collections and the images in them")


@blp.route("/collections", methods=["POST"])
@blp.arguments(CollectionCreate)
@blp.response(201, CollectionOut)
@blp.alt_response(409, schema=ErrorResponse, description="a collection of that name exists")
def create_collection_route(body: dict):
    """Create an empty collection."""
    return create_collection(ctx().library, body["name"])


@blp.route("/collections", methods=["GET"])
@blp.arguments(CollectionQuery, location="query")
@blp.response(200, CollectionList)
def list_collections(query: dict):
    """Collections by name with their image, indexed, failed and vector counts, a page at a time
    (pass ``next_cursor`` back as ``cursor``)."""
    page = collection_counts(ctx().library, after=query["cursor"], limit=query["limit"] + 1)
    more = len(page) > query["limit"]
    page = page[:query["limit"]]
    return {"collections": page, "next_cursor": page[-1]["name"] if more else None}


@blp.route("/collections/<string:name>/images", methods=["POST"])
@blp.doc(requestBody={"required": True, "content": {"multipart/form-data": {"schema": ImageUpload}}})
@blp.response(202, JobAccepted)
@blp.alt_response(413, schema=ErrorResponse, description="request larger than DINOSEEK_MAX_UPLOAD_MB")
@blp.alt_response(422, schema=ErrorResponse, description="a file is not a usable image (named in the message)")
def upload_images(name: str):
    """Upload one or many pictures (multipart field ``files``) and index them; answers the job."""
    files = request.files.getlist("files")
    if not files:
        raise ApiError(400, "send the pictures as multipart/form-data field 'files' (one or many)")
    uploads = [Upload(f.filename or f"file{i}", f.read()) for i, f in enumerate(files)]
    context = ctx()
    paths = store_uploads(context.library, name, uploads)
    job_id = create_index_job(context.library, name, paths, chunk_size=context.settings.chunk_size)
    context.jobs.start(job_id)
    return {"job": job_json(context.library, job_id)}


@blp.route("/collections/<string:name>/index-jobs", methods=["POST"])
@blp.arguments(IndexJobCreate)
@blp.response(202, JobAccepted)
@blp.alt_response(403, schema=ErrorResponse, description="a path is outside DINOSEEK_ALLOWED_ROOTS")
@blp.alt_response(404, schema=ErrorResponse, description="uploads asked for, and the collection has none")
def create_index_job_route(body: dict, name: str):
    """Index server paths (files or folders under DINOSEEK_ALLOWED_ROOTS) and, with ``uploads``,
    the collection's uploaded pictures; answers the job."""
    context = ctx()
    paths = check_allowed_paths(body["paths"], context.settings.allowed_roots) if body["paths"] else []
    if body["uploads"]:
        paths.append(str(uploaded_folder(context.library, name)))
    job_id = create_index_job(context.library, name, paths, prune=body["prune"], force=body["force"],
                              chunk_size=context.settings.chunk_size)
    context.jobs.start(job_id)
    return {"job": job_json(context.library, job_id)}


@blp.route("/collections/<string:name>/reindex-jobs", methods=["POST"])
@blp.arguments(ReindexJobCreate)
@blp.response(202, JobAccepted)
@blp.alt_response(404, schema=ErrorResponse, description="no such collection or model")
def create_reindex_job_route(body: dict, name: str):
    """Re-embed every image of the collection with another model (by name, from ``GET /models``),
    then swap to it at once; the old index serves until then."""
    context = ctx()
    job_id = create_reindex_job(context.library, name, model_file(context.library, body["model"]),
                                chunk_size=context.settings.chunk_size)
    context.jobs.start(job_id)
    return {"job": job_json(context.library, job_id)}
