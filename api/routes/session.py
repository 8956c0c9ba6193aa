"""The web app's sign-in: open a cookie session with an API key, read it (its CSRF token), close it."""

from __future__ import annotations

from flask import current_app
from flask_smorest import Blueprint

from api import session as sessions
from api.auth import match_key, session_access
from api.errors import ApiError
from api.schemas import ErrorResponse, SessionOpen, SessionOut

blp = Blueprint("session", __name__, description="Browser sessions (the web app's sign-in)")


def _shown() -> dict:
    """The session as the API shows it: signed in or not, read-only or not, its CSRF token."""
    access = session_access() if sessions.session_key_digest() or current_app.extensions["dinoseek_keys"] is None else None
    if access is None:
        return {"signed_in": False, "read_only": None, "csrf_token": None}
    return {"signed_in": True, "read_only": not access, "csrf_token": sessions.csrf_token()}


@blp.route("/session", methods=["POST"])
@blp.arguments(SessionOpen)
@blp.response(200, SessionOut)
@blp.alt_response(401, schema=ErrorResponse, description="unknown API key")
def open_session_route(body: dict):
    """Sign in with an API key (JSON body, so no cross-site form can post it): sets a signed,
    HttpOnly, SameSite=Strict session cookie holding an HMAC of the key, never the key; answers the
    session with its CSRF token, which every other request but GET must send as ``X-CSRF-Token``."""
    keys = current_app.extensions["dinoseek_keys"]
    writable = True if keys is None else match_key(body["key"], keys)
    if writable is None:
        raise ApiError(401, "unknown API key")
    sessions.open_session(body["key"])
    return _shown()


@blp.route("/session", methods=["GET"])
@blp.response(200, SessionOut)
def describe_session():
    """Whether this browser is signed in, read-only or not, and the session's CSRF token (no key needed)."""
    return _shown()


@blp.route("/session", methods=["DELETE"])
@blp.response(204)
@blp.alt_response(403, schema=ErrorResponse, description="a session cookie without its X-CSRF-Token")
def close_session_route():
    """Sign out: the cookie is cleared (the request needs the session's CSRF token, as every write does)."""
    if sessions.session_key_digest() is not None and not sessions.csrf_ok():
        raise ApiError(403, f"signing out needs the session's CSRF token in the {sessions.CSRF_HEADER} header", code="csrf")
    sessions.close_session()
    return None
