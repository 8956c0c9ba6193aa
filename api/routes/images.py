"""Images: describe, delete, thumbnails and previews, the original file."""

from __future__ import annotations

from urllib.parse import quote

from flask import Response, request
from flask_smorest import Blueprint

from api.context import ctx
from api.schemas import ErrorResponse, ImageOut, ThumbnailQuery
from indexer.images import Rendition, delete_image, get_image, original, thumbnail

blp = Blueprint("images", __name__, description="Single images")

CACHE = "private, max-age=300"  # then revalidated with If-None-Match (the ETag is the file's hash as indexed)


def _send(rendition: Rendition, disposition: str | None = None) -> Response:
    """The picture, or 304 when the client's copy (If-None-Match) is current."""
    if rendition.data is None:
        response = Response(status=304)
    else:
        response = Response(rendition.data, mimetype=rendition.mimetype)
        if disposition:
            response.headers["Content-Disposition"] = disposition
    response.set_etag(rendition.etag)
    response.headers["Cache-Control"] = CACHE
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"  # shown, never run
    return response


@blp.route("/images/<int(max=9223372036854775807):image_id>", methods=["GET"])
@blp.response(200, ImageOut)
@blp.alt_response(404, schema=ErrorResponse)
def describe_image(image_id: int):
    """Where the image is, its state and metadata."""
    return get_image(ctx().library, image_id)


@blp.route("/images/<int(max=9223372036854775807):image_id>", methods=["DELETE"])
@blp.response(200, ImageOut)
@blp.alt_response(404, schema=ErrorResponse)
@blp.alt_response(409, schema=ErrorResponse)
def remove_image(image_id: int):
    """Remove the image from its collection: its vectors, then its row. The file is left alone.
    409 ``busy`` while a job writes the collection (the request waits a few seconds, not forever)."""
    return delete_image(ctx().library, image_id)


@blp.route("/images/<int(max=9223372036854775807):image_id>/thumbnail", methods=["GET"])
@blp.arguments(ThumbnailQuery, location="query")
@blp.response(200, description="JPEG, at most `size` pixels on the long side (256 for a grid, up to 2048 for a "
                               "viewer's preview), with an ETag", content_type="image/jpeg")
@blp.alt_response(304, description="the copy named by If-None-Match is current")
@blp.alt_response(404, schema=ErrorResponse)
def image_thumbnail(query: dict, image_id: int):
    """A JPEG thumbnail or preview of the image, oriented as displayed; 304 for a current If-None-Match."""
    return _send(thumbnail(ctx().library, image_id, query["size"], request.if_none_match))


@blp.route("/images/<int(max=9223372036854775807):image_id>/file", methods=["GET"])
@blp.response(200, description="the file's bytes as they are, typed by their format, with an ETag",
              content_type="application/octet-stream")
@blp.alt_response(304, description="the copy named by If-None-Match is current")
@blp.alt_response(404, schema=ErrorResponse)
def image_file(image_id: int):
    """The original file, on demand: only the path the catalog stores, read back only while it
    resolves under a folder its collection indexed, the uploads or DINOSEEK_ALLOWED_ROOTS."""
    rendition = original(ctx().library, image_id, request.if_none_match)
    return _send(rendition, f"inline; filename*=UTF-8''{quote(rendition.filename or 'image', safe='')}")
