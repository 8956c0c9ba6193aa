"""Health, metrics, and the Swagger UI assets served from the installed package (no CDN)."""

from __future__ import annotations

import swagger_ui_bundle
from flask import Response, current_app, send_from_directory
from flask_smorest import Blueprint
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import holds_key
from api.context import ctx
from api.schemas import Health
from indexer.health import check_health

blp = Blueprint("system", __name__, description="Health and metrics")


@blp.route("/health", methods=["GET"])
@blp.response(200, Health)
@blp.alt_response(503, schema=Health, description="a backing service is down")
def health():
    """Checks the database, the broker (when configured), the vector store and that every collection's
    stores hold its indexed vectors (``degraded``, still 200, when one lacks some); no key needed for
    the status, the checks' latencies and errors only with one (answers are cached a moment)."""
    report = check_health(ctx().library)
    shown = report if holds_key() else {"status": report["status"]}
    return shown, 503 if report["status"] == "unavailable" else 200


@blp.route("/metrics", methods=["GET"])
@blp.response(200, description="Prometheus text format", content_type="text/plain")
def metrics():
    """Request latency histograms, job counts, index sizes."""
    return Response(generate_latest(current_app.extensions["dinoseek_metrics"]), mimetype=CONTENT_TYPE_LATEST)


def docs_assets(filename: str):
    """Swagger UI's scripts and styles, from the swagger-ui-bundle package (served to key holders only)."""
    return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)
