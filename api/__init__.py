"""The Flask REST API: ``create_app(settings)`` builds it, one blueprint per resource under ``/api/v1``.

Schemas (``api/schemas.py``) validate requests and write the OpenAPI document (``/api/v1/openapi.json``,
browsable at ``/api/v1/docs``) through flask-smorest; every error is JSON (``api/errors.py``);
every route but ``/health`` and the sign-in needs an API key or a session opened with one
(``api/auth.py``, ``api/session.py``). The web app (``api/web``) is served at ``/``.
"""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from api import auth, body_limits, concurrency, metrics, session, web
from api.context import ApiContext
from api.errors import register_error_handlers
from api.routes import collections, compare, duplicates, images, jobs, models, review, search, system, trash
from api.routes import session as session_routes
from api.schemas import ErrorResponse
from dinoseek.settings import Settings, SettingsError, check_secrets, load_settings
from indexer.library import Library

PREFIX = "/api/v1"


class DinoseekApi(Api):
    """flask-smorest, documenting errors in dinoseek's shape."""

    ERROR_SCHEMA = ErrorResponse


def create_app(settings: Settings | None = None, *, insecure_no_auth: bool = False,
               library: Library | None = None) -> Flask:
    """The API for ``settings`` (default: read from the environment). Refuses to build without API
    keys unless ``insecure_no_auth`` (a development server on a trusted machine), and with any
    placeholder or short secret (``check_secrets``)."""
    settings = settings or load_settings()
    check_secrets(settings)
    if not settings.api_keys and not insecure_no_auth:
        raise SettingsError("DINOSEEK_API_KEYS is not set: the API refuses to start without keys "
                            "(comma-separated; KEY is read-write, KEY:ro read-only), unless started with --insecure-no-auth")
    app = Flask("dinoseek", static_folder=None)  # the web app serves its own (api/web)
    app.config.update(
        API_TITLE="dinoseek", API_VERSION="1", OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=PREFIX, OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs", OPENAPI_SWAGGER_UI_URL=f"{PREFIX}/docs-assets/",
        MAX_CONTENT_LENGTH=settings.max_upload_mb * 1024 * 1024,
        JSON_SORT_KEYS=False,
        API_SPEC_OPTIONS={
            "info": {"description": "Self-hosted image retrieval: query by example, near-duplicates, jobs."},
            "components": {"securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "session": {"type": "apiKey", "in": "cookie", "name": session.COOKIE_NAME,
                            "description": "the web app's session (POST /session); writes also need X-CSRF-Token"}}},
            "security": [{"bearer": []}, {"apiKey": []}, {"session": []}],
        },
    )
    context = ApiContext(settings, library or Library(settings))
    app.extensions["dinoseek"] = context
    app.extensions["dinoseek_metrics"] = metrics.install(app, context.library)
    body_limits.install(app)
    concurrency.install(app, settings.expensive_reads)
    api = DinoseekApi(app)
    app.add_url_rule(f"{PREFIX}/docs-assets/<path:filename>", "docs_assets", system.docs_assets)
    for module in (collections, jobs, search, duplicates, review, trash, compare, images, models, system, session_routes):
        api.register_blueprint(module.blp, url_prefix=PREFIX)
    session.install(app, settings)
    web.install(app)
    register_error_handlers(app)
    auth.install(app, None if insecure_no_auth else auth.parse_keys(settings.api_keys))
    return app
