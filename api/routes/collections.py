"""Collections: create, list, add images (uploads or server paths)."""

from __future__ import annotations

import os
from pathlib import Path

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
)
from indexer.errors import Forbidden

blp = Blueprint("collections", __name__, description="Collections and the images in them")


@blp.route("/collections", methods=["POST"])
@blp.arguments(CollectionCreate)
@blp.response(201, CollectionOut)
@blp.alt_response(409, schema=ErrorResponse, description="a collection of that name exists")
def create_collection(body: dict):
    """Create an empty collection."""
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    from indexer.catalog.models import Collection

    library = ctx().library
    try:
        with library.catalog.session() as s:
            if s.scalar(select(Collection.id).where(Collection.name == body["name"])) is not None:
                raise ApiError(409, f"collection {body['name']!r} exists")
            library.get_or_create_collection(s, body["name"])
    except IntegrityError as exc:  # created by a concurrent request between the check and the insert
        raise ApiError(409, f"collection {body['name']!r} exists") from exc
    return {"name": body["name"], "images": 0, "indexed": 0, "failed": 0, "vectors": 0, "model": None}


@blp.route("/collections", methods=["GET"])
@blp.arguments(CollectionQuery, location="query")
@blp.response(200, CollectionList)
def list_collections(query: dict):
    """Collections by name with their image, indexed, failed and vector counts, a page at a time
    (pass ``next_cursor`` back as ``cursor``)."""
    from indexer.collections import collection_counts

    page = collection_counts(ctx().library, after=query["cursor"], limit=query["limit"] + 1)
    more = len(page) > query["limit"]
    page = page[:query["limit"]]
    return {"collections": page, "next_cursor": page[-1]["name"] if more else None}


def _job_json(job_id: int) -> dict:
    from indexer.indexing import job_json

    return job_json(ctx().library, job_id)


@blp.route("/collections/<string:name>/images", methods=["POST"])
@blp.doc(requestBody={"required": True, "content": {"multipart/form-data": {"schema": ImageUpload}}})
@blp.response(202, JobAccepted)
@blp.alt_response(413, schema=ErrorResponse, description="request larger than DINOSEEK_MAX_UPLOAD_MB")
@blp.alt_response(422, schema=ErrorResponse, description="a file is not a usable image (named in the message)")
def upload_images(name: str):
    """Upload one or many pictures (multipart field ``files``) and index them; answers the job."""
    from indexer.indexing import create_index_job
    from indexer.uploads import Upload, store_uploads

    files = request.files.getlist("files")
    if not files:
        raise ApiError(400, "send the pictures as multipart/form-data field 'files' (one or many)")
    uploads = [Upload(f.filename or f"file{i}", f.read()) for i, f in enumerate(files)]
    context = ctx()
    paths = store_uploads(context.library, name, uploads)
    job_id = create_index_job(context.library, name, paths, chunk_size=context.settings.chunk_size)
    context.start_index_job(job_id)
    return {"job": _job_json(job_id)}


def check_allowed_paths(paths: list[str], roots: tuple[Path, ...]) -> list[str]:
    """Resolved forms of ``paths``, each under one of ``roots``; anything else is ``Forbidden``."""
    if not roots:
        raise Forbidden("this server indexes no server paths: DINOSEEK_ALLOWED_ROOTS is not set")
    resolved = []
    for raw in paths:
        if "\x00" in raw:
            raise ApiError(400, f"path {raw!r} contains a NUL byte")
        path = Path(raw)
        if ".." in path.parts:
            raise Forbidden(f"path {raw!r} contains '..'")
        if not path.is_absolute():
            raise Forbidden(f"path {raw!r} is not absolute: give a path under {', '.join(map(str, roots))}")
        real = Path(os.path.realpath(path))  # symlinks resolved: a link that leaves the roots is refused
        if not any(real == root or real.is_relative_to(root) for root in roots):
            raise Forbidden(f"path {raw!r} is outside the allowed roots ({', '.join(map(str, roots))})")
        resolved.append(str(real))
    return resolved


@blp.route("/collections/<string:name>/index-jobs", methods=["POST"])
@blp.arguments(IndexJobCreate)
@blp.response(202, JobAccepted)
@blp.alt_response(403, schema=ErrorResponse, description="a path is outside DINOSEEK_ALLOWED_ROOTS")
def create_index_job_route(body: dict, name: str):
    """Index server paths (files or folders under DINOSEEK_ALLOWED_ROOTS); answers the job."""
    from indexer.indexing import create_index_job

    context = ctx()
    paths = check_allowed_paths(body["paths"], context.settings.allowed_roots)
    job_id = create_index_job(context.library, name, paths, prune=body["prune"], chunk_size=context.settings.chunk_size)
    context.start_index_job(job_id)
    return {"job": _job_json(job_id)}
