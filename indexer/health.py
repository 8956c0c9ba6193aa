"""Whether the services the product needs answer: the catalog, the broker (if any), the vector store."""

from __future__ import annotations

import time

from sqlalchemy import text

from indexer.library import Library


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        detail = check() or {}
        return {"ok": True, "ms": round(1000 * (time.perf_counter() - started), 1), **detail}
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return {"ok": False, "ms": round(1000 * (time.perf_counter() - started), 1),
                "error": f"{type(exc).__name__}: {exc}"[:300]}


def check_health(library: Library) -> dict:
    settings = library.settings
    checks = {}

    def database():
        with library.catalog.engine.connect() as conn:
            conn.execute(text("select 1"))

    checks["database"] = _timed(database)
    if settings.broker_url:
        def broker():
            import redis

            client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2, socket_timeout=2)
            try:
                client.ping()
            finally:
                client.close()

        checks["broker"] = _timed(broker)

    def vector_store():
        if settings.vector_backend == "qdrant" and settings.qdrant_url:
            from indexer.stores.qdrant_server_store import connect

            client = connect(settings.qdrant_url, library.qdrant_config, timeout=3)
            try:
                client.get_collections()
            finally:
                client.close()
            return {"backend": "qdrant-server"}
        library.stores_dir.mkdir(parents=True, exist_ok=True)
        probe = library.stores_dir / ".health"
        probe.write_bytes(b"ok")
        probe.unlink()
        return {"backend": settings.vector_backend if settings.vector_backend == "faiss" else "qdrant-edge"}

    checks["vector_store"] = _timed(vector_store)
    return {"status": "ok" if all(c["ok"] for c in checks.values()) else "unavailable", "checks": checks}
