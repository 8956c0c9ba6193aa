"""Query by example: an uploaded picture (multipart) or an indexed image (JSON ``image_id``)."""

from __future__ import annotations

from flask import request
from flask_smorest import Blueprint
from marshmallow import ValidationError

from api.auth import reads
from api.context import ctx
from api.errors import ApiError
from api.schemas import ErrorResponse, RegionJson, RegionResults, RegionUpload, Results, SearchJson, SearchParams, SearchUpload

blp = Blueprint("search", __name__, description="Similarity search")

QUERY_BODY = {"required": True, "content": {"application/json": {"schema": SearchJson},
                                            "multipart/form-data": {"schema": SearchUpload}}}


def parse_query() -> tuple[dict, object]:
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


def query_vector(picture) -> object:
    """Decode an uploaded picture exactly as indexing decodes files, and embed it in this process
    (or on a gpu worker, with ``DINOSEEK_QUERY_EMBEDDING=gpu``)."""
    from indexer.uploads import Upload

    return embed_upload(Upload(picture.filename or "image", picture.read()))


def embed_upload(upload, loaded=None) -> object:
    """The descriptor of an upload (``loaded``: its decoded picture, when the caller has it)."""
    from indexer.search import embed_pictures
    from indexer.uploads import decode_upload

    context = ctx()
    library = context.library
    if context.settings.query_embedding == "gpu" and upload.data:
        return context.embed_on_worker(upload.data, upload.filename)
    if loaded is None:
        loaded = decode_upload(upload, library.settings.max_image_pixels, target_long_side=library.embedder.image_size)
    return embed_pictures(library, [loaded.image])


def filters_of(params: dict):
    from indexer.search import SearchFilters

    return SearchFilters(params["path_prefix"], params["taken_after"], params["taken_before"], tuple(params["format"]))


@blp.route("/collections/<string:name>/search", methods=["POST"])
@blp.doc(requestBody=QUERY_BODY)
@blp.response(200, Results)
@blp.alt_response(404, schema=ErrorResponse)
@blp.alt_response(422, schema=ErrorResponse, description="the picture is not a usable image, or a parameter is invalid")
@reads
def search(name: str):
    """The k closest images to a picture or to an indexed image, with metadata; filters and a score threshold optional."""
    from indexer.search import search_by_id, search_vectors

    params, picture = parse_query()
    library = ctx().library
    filters = filters_of(params)
    if picture is None:
        hits = search_by_id(library, name, params["image_id"], params["k"], params["threshold"], filters=filters)
    else:
        with library.catalog.session() as s:
            library.get_collection(s, name)  # a missing collection answers 404 before the model runs
        hits = search_vectors(library, name, query_vector(picture), params["k"], params["threshold"],
                              filters=filters)[0]
    return {"results": [h.to_json(with_metadata=True) for h in hits]}


def _parse_box(value) -> list[int]:
    if isinstance(value, str):
        value = value.split(",")
    try:
        box = [int(round(float(v))) for v in value]
    except (TypeError, ValueError, OverflowError) as exc:
        raise ApiError(422, f"box must be four finite numbers x0,y0,x1,y1 in pixels, got {value!r}") from exc
    if len(box) != 4:
        raise ApiError(422, f"box must be four numbers x0,y0,x1,y1 in pixels, got {value!r}")
    return box


@blp.route("/collections/<string:name>/search/region", methods=["POST"])
@blp.doc(requestBody={"required": True, "content": {"application/json": {"schema": RegionJson},
                                                    "multipart/form-data": {"schema": RegionUpload}}})
@blp.response(200, RegionResults)
@blp.alt_response(404, schema=ErrorResponse)
@blp.alt_response(422, schema=ErrorResponse)
@reads
def search_region_route(name: str):
    """The images that contain a box of a picture (uploaded, or an indexed image), each with the box
    where it matched, in that image's pixels."""
    from indexer.regions import RegionQuery, check_box, region_by_id, search_region
    from indexer.uploads import Upload, decode_upload

    raw = request.form if request.mimetype == "multipart/form-data" else (request.get_json(silent=True) or {})
    if not isinstance(raw, dict) and request.mimetype != "multipart/form-data":
        raise ApiError(400, "the JSON body must be an object such as {\"image_id\": 12, \"box\": [0, 0, 50, 50]}")
    if "box" not in raw:
        raise ApiError(422, "a region query needs box: x0,y0,x1,y1 in the picture's pixels")
    box = _parse_box(raw.get("box"))
    params, picture = parse_query()
    library = ctx().library
    if picture is None:
        hits = region_by_id(library, name, params["image_id"], box, params["k"])
        return {"box": box, "results": [h.to_json(with_metadata=True) for h in hits]}
    with library.catalog.session() as s:
        library.get_collection(s, name)
    loaded = decode_upload(Upload(picture.filename or "image", picture.read()), library.settings.max_image_pixels)
    clipped = check_box(box, loaded.image.width, loaded.image.height)
    hits = search_region(library, name, RegionQuery(loaded.image, clipped), params["k"])
    return {"box": clipped, "results": [h.to_json(with_metadata=True) for h in hits]}
