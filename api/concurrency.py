"""Per-route limits on expensive reads (searches, region queries, duplicate checks): at most
``DINOSEEK_EXPENSIVE_READS`` of each run at once in an API process; one more is answered 429 with
``Retry-After`` at once, so a read-only key cannot hold every server thread with them."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

from flask import Flask, current_app, request

from api.errors import error_response

RETRY_AFTER_SECONDS = 1


def install(app: Flask, per_route: int) -> None:
    """Give the app its gates: one semaphore of ``per_route`` slots per limited route, made on first use."""
    app.extensions["dinoseek_gates"] = {"per_route": per_route, "lock": threading.Lock(), "gates": {}}


def _gate(endpoint: str) -> threading.BoundedSemaphore:
    state = current_app.extensions["dinoseek_gates"]
    with state["lock"]:
        return state["gates"].setdefault(endpoint, threading.BoundedSemaphore(state["per_route"]))


def limited(view: Callable) -> Callable:
    """Run the view only while its route has a free slot; else 429 ``too_many_requests``."""

    @functools.wraps(view)
    def gated(*args, **kwargs):
        gate = _gate(request.endpoint or view.__name__)
        if not gate.acquire(blocking=False):
            per_route = current_app.extensions["dinoseek_gates"]["per_route"]
            response = error_response(429, f"{request.path} already runs {per_route} requests at once "
                                           f"(DINOSEEK_EXPENSIVE_READS); retry in {RETRY_AFTER_SECONDS} s")
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        try:
            return view(*args, **kwargs)
        finally:
            gate.release()

    return gated
