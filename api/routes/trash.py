"""The trash: discarded pictures moved into a trash folder inside their allowed root, and restored."""

from __future__ import annotations

from flask_smorest import Blueprint

from api.context import ctx
from api.schemas import ErrorResponse, TrashIn, TrashList, TrashQuery, TrashRestored
from indexer.jobs import job_json
from indexer.trash import list_trash, restore_entry, trash_images

blp = Blueprint("trash", __name__, description="Moving discarded pictures to the trash and back")


@blp.route("/collections/<string:name>/trash", methods=["POST"])
@blp.arguments(TrashIn)
@blp.response(200, TrashList)
@blp.alt_response(403, schema=ErrorResponse, description="outside the allowed roots and uploads, or a reference folder")
@blp.alt_response(404, schema=ErrorResponse)
@blp.alt_response(409, schema=ErrorResponse, description="a job writes the collection")
def trash(body: dict, name: str):
    """Move the pictures' files to ``<root>/.dinoseek-trash/<collection>/`` and remove them from the index."""
    return {"entries": trash_images(ctx().library, name, body["image_ids"])}


@blp.route("/collections/<string:name>/trash", methods=["GET"])
@blp.arguments(TrashQuery, location="query")
@blp.response(200, TrashList)
@blp.alt_response(404, schema=ErrorResponse)
def trashed(query: dict, name: str):
    """What is in the collection's trash, newest first (``restored=true``: what left it too)."""
    return {"entries": list_trash(ctx().library, name, query["restored"])}


@blp.route("/trash/<int(max=9223372036854775807):entry_id>/restore", methods=["POST"])
@blp.response(202, TrashRestored)
@blp.alt_response(404, schema=ErrorResponse)
def restore(entry_id: int):
    """Move the file back to its path and index it again; answers the entry and the index job."""
    context = ctx()
    entry, job_id = restore_entry(context.library, entry_id, context.settings.chunk_size)
    context.jobs.start(job_id)
    return {"entry": entry, "job": job_json(context.library, job_id)}
