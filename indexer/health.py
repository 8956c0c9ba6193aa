"""Whether the services the product needs answer: the catalog, the broker (if any), the vector store."""

from __future__ import annotations

import threading
import time
import weakref

import redis
from sqlalchemy import select, text

from indexer.catalog.models import Collection
from indexer.library import Library
from indexer.store_gaps import describe_gaps, store_gaps


def _timed(check) -> dict:
    """Run one check: ok with its milliseconds (and what it returned), or the error it raised."""
    started = time.perf_counter()
    try:
        detail = check() or {}
        return {"ok": True, "ms": round(1000 * (time.perf_counter() - started), 1), **detail}
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return {"ok": False, "ms": round(1000 * (time.perf_counter() - started), 1),
                "error": f"{type(exc).__name__}: {exc}"[:300]}


HEALTH_CACHE_SECONDS = 2.0  # a burst of health checks (probes, a load balancer, a loop) is answered once
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # library → (when, report)
_cache_lock = threading.Lock()


def check_health(library: Library) -> dict:
    """Each backing service's answer and latency; ``status`` is ``ok`` when every one answered and every
    collection's stores hold its indexed rows' vectors, ``degraded`` when a store lacks some (searches
    miss them until ``dinoseek index`` repairs it), ``unavailable`` when a service does not answer.
    Computed at most once per HEALTH_CACHE_SECONDS per library, by one caller at a time."""
    with _cache_lock:
        at, report = _cache.get(library, (-HEALTH_CACHE_SECONDS, {}))
        if time.monotonic() - at < HEALTH_CACHE_SECONDS:
            return report
        report = _check(library)
        _cache[library] = (time.monotonic(), report)
        return report


def _check(library: Library) -> dict:
    settings = library.settings
    checks = {}

    def database():
        with library.catalog.engine.connect() as conn:
            conn.execute(text("select 1"))

    checks["database"] = _timed(database)
    if settings.broker_url:
        def broker():
            client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2, socket_timeout=2)
            try:
                client.ping()
            finally:
                client.close()

        checks["broker"] = _timed(broker)

    checks["vector_store"] = _timed(library.backend.probe)
    if not all(c["ok"] for c in checks.values()):
        return {"status": "unavailable", "checks": checks}
    checks["collections"] = _timed(lambda: _incomplete_stores(library))
    whole = checks["collections"]["ok"] and not checks["collections"]["incomplete"]
    checks["collections"]["ok"] = whole
    return {"status": "ok" if whole else "degraded", "checks": checks}


def _incomplete_stores(library: Library) -> dict:
    """The collections whose stores lack vectors of their indexed rows (a lost store), each with
    what it lacks and how to repair it."""
    incomplete = []
    with library.catalog.session() as s:
        for collection in s.scalars(select(Collection).order_by(Collection.name)):
            gaps = store_gaps(library, s, collection)
            problem = describe_gaps(collection.name, gaps)
            if problem:
                incomplete.append({"collection": collection.name, "missing_vectors": gaps["missing_vectors"],
                                   "missing_patch_vectors": gaps["missing_patch_vectors"], "problem": problem})
    return {"incomplete": incomplete}
