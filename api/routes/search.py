"""Query by example: an uploaded picture (multipart) or an indexed image (JSON ``image_id``); by region."""

from __future__ import annotations

from flask import request
from flask_smorest import Blueprint

from api.auth import reads
from api.concurrency import limited
from api.context import ctx
from api.errors import ApiError
from api.query_params import filters_of, parse_query, query_picture, upload_of, view_embedder
from api.schemas import ErrorResponse, RegionJson, RegionResults, RegionUpload, Results, SearchJson, SearchUpload
from indexer.query import RegionQuery, check_box, parse_box, region_by_id, search_by_id, search_picture, search_region
from indexer.uploads import decode_upload

blp = Blueprint("search", __name__, description="Similarity search")

QUERY_BODY = {"required": True, "content": {"application/json": {"schema": SearchJson},
                                            "multipart/form-data": {"schema": SearchUpload}}}


@blp.route("/collections/<string:name>/search", methods=["POST"])
@blp.doc(requestBody=QUERY_BODY)
@blp.response(200, Results)
@blp.alt_response(404, schema=ErrorResponse)
@blp.alt_response(422, schema=ErrorResponse, description="the picture is not a usable image, or a parameter is invalid")
@blp.alt_response(429, schema=ErrorResponse, description="too many of these at once; retry after Retry-After")
@reads
@limited
def search(name: str):
    """The k closest images to a picture or to an indexed image, with metadata; filters and a score threshold optional."""
    params, picture = parse_query()
    library = ctx().library
    filters = filters_of(params)
    if picture is None:
        hits = search_by_id(library, name, params["image_id"], params["k"], params["threshold"], filters=filters,
                            verify=params["verify"], verify_top=params["verify_top"])
    else:
        library.require_collection(name)  # a missing collection answers 404 before the model runs
        upload = upload_of(picture)
        hits = search_picture(library, name, query_picture(upload), params["k"], params["threshold"], filters=filters,
                              verify=params["verify"], verify_top=params["verify_top"], embed=view_embedder(upload))
    return {"results": [h.to_json(with_metadata=True) for h in hits]}


@blp.route("/collections/<string:name>/search/region", methods=["POST"])
@blp.doc(requestBody={"required": True, "content": {"application/json": {"schema": RegionJson},
                                                    "multipart/form-data": {"schema": RegionUpload}}})
@blp.response(200, RegionResults)
@blp.alt_response(404, schema=ErrorResponse)
@blp.alt_response(422, schema=ErrorResponse)
@blp.alt_response(429, schema=ErrorResponse, description="too many of these at once; retry after Retry-After")
@reads
@limited
def search_region_route(name: str):
    """The images that contain a box of a picture (uploaded, or an indexed image), each with the box
    where it matched, in that image's pixels."""
    raw = request.form if request.mimetype == "multipart/form-data" else (request.get_json(silent=True) or {})
    if not isinstance(raw, dict) and request.mimetype != "multipart/form-data":
        raise ApiError(400, "the JSON body must be an object such as {\"image_id\": 12, \"box\": [0, 0, 50, 50]}")
    if "box" not in raw:
        raise ApiError(422, "a region query needs box: x0,y0,x1,y1 in the picture's pixels")
    box = parse_box(raw.get("box"))
    params, picture = parse_query()
    library = ctx().library
    if picture is None:
        hits = region_by_id(library, name, params["image_id"], box, params["k"])
        return {"box": box, "results": [h.to_json(with_metadata=True) for h in hits]}
    library.require_collection(name)
    loaded = decode_upload(upload_of(picture), library.settings.max_image_pixels)
    clipped = check_box(box, loaded.image.width, loaded.image.height)
    hits = search_region(library, name, RegionQuery(loaded.image, clipped), params["k"])
    return {"box": clipped, "results": [h.to_json(with_metadata=True) for h in hits]}
