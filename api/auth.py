"""API keys: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``, read-write or read-only (``KEY:ro``).

Every route but ``/health`` needs a key. GET and HEAD are reads; any other method writes unless its
view is marked ``@reads`` (searches and duplicate checks are POSTs that change nothing).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from flask import Flask, current_app, request

from api.errors import error_response

PUBLIC_ENDPOINTS = {"system.health"}


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


def _match(presented: str, keys: dict[str, bool]) -> bool | None:
    """Writable (True), read-only (False), or unknown (None); compared in constant time."""
    found = None
    for key, writable in keys.items():
        if hmac.compare_digest(presented.encode(), key.encode()):
            found = writable
    return found


def holds_key() -> bool:
    """Whether this request presents a known key (always, with auth switched off): what the public
    routes show only to key holders."""
    keys = current_app.extensions["dinoseek_keys"]
    presented = _presented_key()
    return keys is None or (presented is not None and _match(presented, keys) is not None)


def install(app: Flask, keys: dict[str, bool] | None) -> None:
    """Check the key of every request; ``keys`` None switches auth off (``--insecure-no-auth``)."""
    app.extensions["dinoseek_keys"] = keys

    @app.before_request
    def check_key():
        if keys is None or request.endpoint in PUBLIC_ENDPOINTS:
            return None
        presented = _presented_key()
        if presented is None:
            return error_response(401, "an API key is required: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
        writable = _match(presented, keys)
        if writable is None:
            return error_response(401, "unknown API key")
        view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
        is_read = request.method in ("GET", "HEAD", "OPTIONS") or getattr(view, "_dinoseek_reads", False)
        if not writable and not is_read:
            return error_response(403, f"this API key is read-only; {request.method} {request.path} needs a read-write key")
        return None
