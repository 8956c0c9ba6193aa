"""Images: describe, delete, thumbnail."""

from __future__ import annotations

from flask import Response
from flask_smorest import Blueprint

from api.context import ctx
from api.schemas import ErrorResponse, ImageOut, ThumbnailQuery

blp = Blueprint("images", __name__, description="Single images")


@blp.route("/images/<int(max=9223372036854775807):image_id>", methods=["GET"])
@blp.response(200, ImageOut)
@blp.alt_response(404, schema=ErrorResponse)
def get_image(image_id: int):
    """Where the image is, its state and metadata."""
    from indexer.images import get_image as describe

    return describe(ctx().library, image_id)


@blp.route("/images/<int(max=9223372036854775807):image_id>", methods=["DELETE"])
@blp.response(200, ImageOut)
@blp.alt_response(404, schema=ErrorResponse)
def delete_image(image_id: int):
    """Remove the image from its collection: its vectors, then its row. The file is left alone."""
    from indexer.images import delete_image as remove

    return remove(ctx().library, image_id)


@blp.route("/images/<int(max=9223372036854775807):image_id>/thumbnail", methods=["GET"])
@blp.arguments(ThumbnailQuery, location="query")
@blp.response(200, description="JPEG, at most `size` pixels on the long side",
              content_type="image/jpeg")
@blp.alt_response(404, schema=ErrorResponse)
def thumbnail(query: dict, image_id: int):
    """A JPEG thumbnail of the image, oriented as displayed."""
    from indexer.images import thumbnail as make

    return Response(make(ctx().library, image_id, query["size"]), mimetype="image/jpeg",
                    headers={"Cache-Control": "private, max-age=300"})
