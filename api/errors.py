"""Every error as JSON ``{"error": {"code", "message", "details"}}``: no HTML pages, no stack traces."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from kombu.exceptions import OperationalError as BrokerError
from werkzeug.exceptions import HTTPException

from api.body_limits import BodyTooLarge
from indexer.catalog.database import CONCURRENT_CHANGE, DATABASE_UNAVAILABLE, VALUE_REFUSED, CatalogError
from indexer.errors import (
    AlreadyExists,
    Busy,
    Forbidden,
    IndexerError,
    InvalidRequest,
    InvalidValue,
    ModelMismatch,
    NotActive,
    NotFound,
    Unavailable,
    UnusableImage,
)
from indexer.stores import StoreError

log = logging.getLogger(__name__)

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
         409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "unprocessable",
         429: "too_many_requests", 500: "internal", 503: "unavailable"}


class ApiError(Exception):
    """An error a route raises on purpose, with its HTTP status."""

    def __init__(self, status: int, message: str, details: dict | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details or {}
        self.code = code or CODES.get(status, "error")


def error_response(status: int, message: str, details: dict | None = None, code: str | None = None):
    body = {"error": {"code": code or CODES.get(status, "error"), "message": message, "details": details or {}}}
    response = jsonify(body)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="dinoseek"'
    return response


def _status_of(exc: IndexerError) -> int:
    if isinstance(exc, Unavailable):
        return 503
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, (UnusableImage, InvalidValue)):
        return 422
    if isinstance(exc, (Busy, ModelMismatch, AlreadyExists, NotActive)):
        return 409
    if isinstance(exc, InvalidRequest):
        return 400
    return 400


def _code_of(exc: IndexerError) -> str | None:
    """The machine-readable ``code`` of the errors a client is expected to act on."""
    if isinstance(exc, Busy):
        return "busy"
    if isinstance(exc, NotActive):
        return "not_active"
    return None


def handle_http_exception(exc: HTTPException):
    """Werkzeug's errors (404 route, 405, 413 body too large...) and webargs validation (422)."""
    details = {}
    data = getattr(exc, "data", None) or {}
    if "messages" in data:  # webargs: {location: {field: [messages]}}
        details = {"fields": data["messages"]}
    message = exc.description if exc.code != 422 else "request does not match the schema: " + _flatten(details)
    if exc.code == 413:
        message = ("request body is larger than the limit (DINOSEEK_MAX_UPLOAD_MB)"
                   if request.mimetype == "multipart/form-data" else BodyTooLarge.description)
    return error_response(exc.code or 500, message, details)


def _flatten(details: dict) -> str:
    parts = []
    for location, fields in details.get("fields", {}).items():
        for name, messages in (fields.items() if isinstance(fields, dict) else [("", fields)]):
            parts.append(f"{location}.{name}: {'; '.join(map(str, messages)) if isinstance(messages, list) else messages}")
    return ", ".join(parts) or "invalid request"


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, lambda e: error_response(e.status, e.message, e.details, e.code))
    app.register_error_handler(IndexerError, lambda e: error_response(_status_of(e), str(e),
                                                                      code=_code_of(e)))
    app.register_error_handler(HTTPException, handle_http_exception)

    def unavailable(exc: Exception):
        log.warning("service unavailable: %s", exc)
        return error_response(503, f"a backing service is unavailable: {type(exc).__name__}")

    app.register_error_handler(CatalogError, unavailable)
    for error in DATABASE_UNAVAILABLE:
        app.register_error_handler(error, unavailable)
    app.register_error_handler(BrokerError, unavailable)
    app.register_error_handler(StoreError, unavailable)
    for error in VALUE_REFUSED:
        app.register_error_handler(error, lambda e: error_response(
            400, "a value in the request cannot be stored or compared (a NUL byte, a number out of range)"))
    for error in CONCURRENT_CHANGE:
        app.register_error_handler(error, lambda e: error_response(
            409, "a concurrent request changed the same rows; try again"))

    def internal(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal error; the server log has the details")

    app.register_error_handler(Exception, internal)
