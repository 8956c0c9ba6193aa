"""Duplicate review: thresholds previewed and applied, decisions (keep, discard, not a duplicate)
recorded, listed, exported and undone, keep rules previewed and applied, reference folders."""

from __future__ import annotations

from flask import Response
from flask_smorest import Blueprint

from api.auth import reads
from api.concurrency import limited
from api.context import ctx
from api.schemas import (
    DecisionList,
    DecisionQuery,
    DecisionsIn,
    DecisionUndone,
    ErrorResponse,
    GroupCounts,
    KeepRulesIn,
    KeepSuggestions,
    ReferenceFolders,
    ThresholdsIn,
)
from indexer.duplicates import (
    add_decisions,
    apply_rules,
    apply_thresholds,
    decisions_csv,
    get_reference_folders,
    list_decisions,
    preview_thresholds,
    regroup_saved,
    saved_thresholds,
    set_reference_folders,
    suggest,
    undo_decision,
)

blp = Blueprint("review", __name__, description="Reviewing duplicate groups: thresholds, decisions, keep rules")


@blp.route("/collections/<string:name>/duplicates/preview", methods=["POST"])
@blp.arguments(ThresholdsIn)
@blp.response(200, GroupCounts)
@blp.alt_response(404, schema=ErrorResponse)
@reads
@limited
def preview(body: dict, name: str):
    """How many groups and pictures the saved scan keeps at these thresholds (nothing saved)."""
    return preview_thresholds(ctx().library, name, body["thresholds"])


@blp.route("/collections/<string:name>/duplicates/thresholds", methods=["GET"])
@blp.response(200, GroupCounts)
@blp.alt_response(404, schema=ErrorResponse)
def thresholds(name: str):
    """The thresholds applied to the collection's groups, and the counts of the saved groups."""
    return saved_thresholds(ctx().library, name)


@blp.route("/collections/<string:name>/duplicates/thresholds", methods=["POST"])
@blp.arguments(ThresholdsIn)
@blp.response(200, GroupCounts)
@blp.alt_response(404, schema=ErrorResponse)
def apply(body: dict, name: str):
    """Record the thresholds and re-make the saved groups at them (later scans apply them too)."""
    return apply_thresholds(ctx().library, name, body["thresholds"])


@blp.route("/collections/<string:name>/duplicates/decisions", methods=["GET"])
@blp.arguments(DecisionQuery, location="query")
@blp.response(200, DecisionList)
@blp.alt_response(404, schema=ErrorResponse)
def decisions(query: dict, name: str):
    """The collection's decisions, oldest first; ``format=csv`` answers them as a CSV file."""
    found = list_decisions(ctx().library, name, query["kind"])
    if query["format"] == "csv":
        return Response(decisions_csv(found), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}-decisions.csv"'})
    return {"decisions": found}


@blp.route("/collections/<string:name>/duplicates/decisions", methods=["POST"])
@blp.arguments(DecisionsIn)
@blp.response(201, DecisionList)
@blp.alt_response(404, schema=ErrorResponse)
def record(body: dict, name: str):
    """Record decisions; a pair marked ``not_duplicate`` splits its group at once and in every later scan."""
    library = ctx().library
    recorded = add_decisions(library, name, body["decisions"])
    doc = {"decisions": recorded}
    if any(d["kind"] == "not_duplicate" for d in body["decisions"]):
        doc["groups"] = regroup_saved(library, name)
    return doc


@blp.route("/duplicates/decisions/<int(max=9223372036854775807):decision_id>", methods=["DELETE"])
@blp.response(200, DecisionUndone)
@blp.alt_response(404, schema=ErrorResponse)
def undo(decision_id: int):
    """Undo a decision; the saved groups are re-made without it."""
    library = ctx().library
    decision = undo_decision(library, decision_id)
    return {"decision": decision, "groups": regroup_saved(library, decision["collection"])}


@blp.route("/collections/<string:name>/duplicates/keep-rules/preview", methods=["POST"])
@blp.arguments(KeepRulesIn)
@blp.response(200, KeepSuggestions)
@blp.alt_response(404, schema=ErrorResponse)
@reads
@limited
def keep_preview(body: dict, name: str):
    """Per saved group (``group_ids``, or those of ``kind``, or all), what the rules keep and discard."""
    return {"groups": suggest(ctx().library, name, body["rules"], body["group_ids"], body["kind"])}


@blp.route("/collections/<string:name>/duplicates/keep-rules/apply", methods=["POST"])
@blp.arguments(KeepRulesIn)
@blp.response(200, KeepSuggestions)
@blp.alt_response(404, schema=ErrorResponse)
def keep_apply(body: dict, name: str):
    """The preview's keep and discard, recorded as decisions naming the rules."""
    return {"groups": apply_rules(ctx().library, name, body["rules"], body["group_ids"], body["kind"])}


@blp.route("/collections/<string:name>/reference-folders", methods=["GET"])
@blp.response(200, ReferenceFolders)
@blp.alt_response(404, schema=ErrorResponse)
def reference_folders(name: str):
    """Folders whose pictures are always kept and never moved to the trash."""
    return {"folders": get_reference_folders(ctx().library, name)}


@blp.route("/collections/<string:name>/reference-folders", methods=["PUT"])
@blp.arguments(ReferenceFolders)
@blp.response(200, ReferenceFolders)
@blp.alt_response(404, schema=ErrorResponse)
def set_folders(body: dict, name: str):
    """Replace the collection's reference folders."""
    return {"folders": set_reference_folders(ctx().library, name, body["folders"])}
