"""Two indexed pictures compared: verdict, matches, boxes, heatmaps and differing metadata."""

from __future__ import annotations

from flask_smorest import Blueprint

from api.concurrency import limited
from api.context import ctx
from api.schemas import CompareOut, CompareQuery, ErrorResponse
from indexer.query import compare_images

blp = Blueprint("compare", __name__, description="Comparing two indexed pictures")


@blp.route("/compare", methods=["GET"])
@blp.arguments(CompareQuery, location="query")
@blp.response(200, CompareOut)
@blp.alt_response(400, schema=ErrorResponse)
@blp.alt_response(404, schema=ErrorResponse)
@limited
def compare(query: dict):
    """Why two pictures of one collection are (or are not) judged copies: what a viewer overlays."""
    return compare_images(ctx().library, query["a"], query["b"])
