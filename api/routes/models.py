"""Models: the checkpoints a request may name (re-indexing a collection)."""

from __future__ import annotations

from flask_smorest import Blueprint

from api.context import ctx
from api.schemas import ModelList
from indexer.models import list_models

blp = Blueprint("models", __name__, description="Models a collection may be re-indexed with")


@blp.route("/models", methods=["GET"])
@blp.response(200, ModelList)
def models():
    """Checkpoints in DINOSEEK_HOME/models and the shipped ones, by name."""
    return {"models": list_models(ctx().library)}
