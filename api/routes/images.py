"""Images: describe, delete, thumbnail."""

from __future__ import annotations

from flask import Response
from flask_smorest import Blueprint

from api.context import ctx
from api.schemas import ErrorResponse, ImageOut, ThumbnailQuery
from indexer.images import delete_image, get_image, thumbnail

blp = Blueprint("images", __name__, description="Single images")


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
@blp.response(200, description="JPEG, at most `size` pixels on the long side",
              content_type="image/jpeg")
@blp.alt_response(404, schema=ErrorResponse)
def image_thumbnail(query: dict, image_id: int):
    """A JPEG thumbnail of the image, oriented as displayed."""
    return Response(thumbnail(ctx().library, image_id, query["size"]), mimetype="image/jpeg",
                    headers={"Cache-Control": "private, max-age=300"})
