"""API keys: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``, read-write or read-only (``KEY:ro``),
or the web app's session cookie opened with one (``api/session.py``).

Every route but ``/health``, the session routes and the web app's shell needs a key. GET and HEAD
are reads; any other method writes unless its view is marked ``@reads`` (searches and duplicate
checks are POSTs that change nothing). A request authenticated by the session cookie alone must
also send the session's CSRF token (``X-CSRF-Token``) on every method but GET, HEAD and OPTIONS.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from flask import Flask, current_app, request

from api import session as sessions
from api.errors import error_response

PUBLIC_ENDPOINTS = {"system.health", "session.open_session_route", "session.describe_session", "session.close_session_route"}
PUBLIC_PREFIXES = ("web.",)  # the web app's page shell and static files: no data in them
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def reads(view: Callable) -> Callable:
    """Mark a POST view as a read: a read-only key may call it."""
    view._dinoseek_reads = True
    return view


def parse_keys(entries: tuple[str, ...]) -> dict[str, bool]:
    """``KEY`` → writable, ``KEY:ro`` → read-only."""
    keys: dict[str, bool] = {}
    for entry in entries:
        if entry.endswith(":ro"):
            keys[entry[:-3]] = False
        else:
            keys[entry] = True
    return keys


def _presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("X-API-Key") or None


def match_key(presented: str, keys: dict[str, bool]) -> bool | None:
    """Writable (True), read-only (False), or unknown (None); compared in constant time."""
    found = None
    for key, writable in keys.items():
        if hmac.compare_digest(presented.encode(), key.encode()):
            found = writable
    return found


def _match_digest(digest: str, keys: dict[str, bool]) -> bool | None:
    """Like ``match_key`` for a session's key digest: a key removed from the settings ends its sessions."""
    found = None
    for key, writable in keys.items():
        if hmac.compare_digest(digest.encode(), sessions.key_digest(key).encode()):
            found = writable
    return found


def session_access() -> bool | None:
    """Writable (True), read-only (False) or None: what this request's session cookie grants
    (auth switched off: writable, for anyone)."""
    keys = current_app.extensions["dinoseek_keys"]
    if keys is None:
        return True
    digest = sessions.session_key_digest()
    return None if digest is None else _match_digest(digest, keys)


def holds_key() -> bool:
    """Whether this request presents a known key or session (always, with auth switched off): what
    the public routes show only to key holders."""
    keys = current_app.extensions["dinoseek_keys"]
    presented = _presented_key()
    if keys is None:
        return True
    if presented is not None:
        return match_key(presented, keys) is not None
    return session_access() is not None


def _is_public(endpoint: str | None) -> bool:
    return endpoint is not None and (endpoint in PUBLIC_ENDPOINTS or endpoint.startswith(PUBLIC_PREFIXES))


def install(app: Flask, keys: dict[str, bool] | None) -> None:
    """Check the key (or session) of every request; ``keys`` None switches auth off (``--insecure-no-auth``)."""
    app.extensions["dinoseek_keys"] = keys

    @app.before_request
    def check_key():
        if keys is None or _is_public(request.endpoint):
            return None
        presented = _presented_key()
        if presented is not None:
            writable = match_key(presented, keys)
            if writable is None:
                return error_response(401, "unknown API key")
        else:
            writable = session_access()
            if writable is None:
                return error_response(401, "an API key is required: send it as 'Authorization: Bearer KEY' or "
                                           "'X-API-Key: KEY', or sign in at / (a session cookie)")
            if request.method not in SAFE_METHODS and not sessions.csrf_ok():
                return error_response(403, f"{request.method} {request.path} with a session cookie needs the "
                                           f"session's CSRF token in the {sessions.CSRF_HEADER} header "
                                           "(GET /api/v1/session gives it)", code="csrf")
        view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
        is_read = request.method in SAFE_METHODS or getattr(view, "_dinoseek_reads", False)
        if not writable and not is_read:
            return error_response(403, f"this API key is read-only; {request.method} {request.path} needs a read-write key")
        return None
