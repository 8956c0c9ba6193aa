"""Health, metrics, and the Swagger UI assets served from the installed package (no CDN)."""

from __future__ import annotations

from flask import Response, current_app, send_from_directory
from flask_smorest import Blueprint

from api.context import ctx
from api.schemas import Health

blp = Blueprint("system", __name__, description="Health and metrics")


@blp.route("/health", methods=["GET"])
@blp.response(200, Health)
@blp.alt_response(503, schema=Health, description="a backing service is down")
def health():
    """Checks the database, the broker (when configured) and the vector store; no key needed."""
    from indexer.health import check_health

    report = check_health(ctx().library)
    return report, 200 if report["status"] == "ok" else 503


@blp.route("/metrics", methods=["GET"])
@blp.response(200, description="Prometheus text format", content_type="text/plain")
def metrics():
    """Request latency histograms, job counts, index sizes."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(current_app.extensions["dinoseek_metrics"]), mimetype=CONTENT_TYPE_LATEST)


def docs_assets(filename: str):
    """Swagger UI's scripts and styles, from the swagger-ui-bundle package (served to key holders only)."""
    import swagger_ui_bundle

    return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)
