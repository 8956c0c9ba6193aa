"""What the search and duplicate routes read from a request: the query's parameters and picture,
and how an uploaded query picture is embedded (here, or on a gpu worker)."""

from __future__ import annotations

from flask import request
from marshmallow import ValidationError
from werkzeug.datastructures import FileStorage

from api.context import ctx
from api.errors import ApiError
from api.schemas import SearchParams
from indexer.query import QueryPicture, SearchFilters, ViewEmbedder, upload_query
from indexer.uploads import Upload


def parse_query() -> tuple[dict, FileStorage | None]:
    """The query parameters and the picture (None for a query by ``image_id``), from JSON or a form."""
    if request.mimetype == "multipart/form-data":
        raw = {k: v for k, v in request.form.items()}
        if "format" in raw:
            raw["format"] = [f.strip() for f in raw["format"].split(",") if f.strip()]
        picture = request.files.get("image")
        if picture is None:
            raise ApiError(400, "send the query picture as multipart field 'image' (or JSON {\"image_id\": N})")
    elif request.is_json:
        raw = request.get_json(silent=True)
        if not isinstance(raw, dict):
            raise ApiError(400, "the JSON body must be an object such as {\"image_id\": 12, \"k\": 10}")
        picture = None
        if raw.get("image_id") is None:
            raise ApiError(400, "a JSON query needs image_id (send a picture as multipart field 'image' instead)")
    else:
        raise ApiError(415, "send multipart/form-data with an 'image' file, or application/json with image_id")
    try:
        params = SearchParams().load(raw)
    except ValidationError as exc:
        raise ApiError(422, "invalid query parameters: " + "; ".join(f"{k}: {v}" for k, v in exc.messages.items()),
                       {"fields": exc.messages}) from exc
    return params, picture


def upload_of(picture: FileStorage) -> Upload:
    """The uploaded query picture's name and bytes."""
    return Upload(picture.filename or "image", picture.read())


def filters_of(params: dict) -> SearchFilters:
    """The metadata filters among the parsed query parameters."""
    return SearchFilters(params["path_prefix"], params["taken_after"], params["taken_before"], tuple(params["format"]))


def query_picture(upload: Upload) -> QueryPicture:
    """An uploaded query picture as search reads it (as indexed, and larger for verification)."""
    return upload_query(ctx().library, upload)


def view_embedder(upload: Upload) -> ViewEmbedder | None:
    """How the descriptors of an uploaded query and of its content windows are computed: on a gpu
    worker with ``DINOSEEK_QUERY_EMBEDDING=gpu`` (None: in this process)."""
    context = ctx()
    if context.settings.query_embedding != "gpu" or not upload.data:
        return None
    return lambda windows: context.jobs.embed_query(upload.data, upload.filename, windows)
