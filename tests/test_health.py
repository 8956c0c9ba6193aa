"""``/health`` (issue 17, finding 11): the status to anyone, the checks and their error text only
to a key holder, one answer for a burst of calls, and concurrent probes that never race."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx

from api import create_app
from dinoseek.settings import load_settings
from indexer.health import check_health
from indexer.library import Library
from tests.support.services import serving

KEY = {"X-API-Key": "health-test-key-0123456"}


def _settings(tmp_path, tiny_model, **changes):
    return replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                   model=str(tiny_model), api_keys=(KEY["X-API-Key"],), **changes)


def test_health_shows_details_only_with_a_key(tmp_path, tiny_model) -> None:
    down = _settings(tmp_path, tiny_model, broker_url="redis://:a-long-secret-broker-password@127.0.0.1:1/0")
    with serving(create_app(down)) as base:
        anonymous = httpx.get(f"{base}/health", timeout=30)
        assert anonymous.status_code == 503 and anonymous.json() == {"status": "unavailable"}
        assert "Connection" not in anonymous.text and "broker-password" not in anonymous.text
        keyed = httpx.get(f"{base}/health", headers=KEY, timeout=30).json()
        assert not keyed["checks"]["broker"]["ok"] and "Error" in keyed["checks"]["broker"]["error"]
        assert keyed["checks"]["database"]["ok"] and keyed["checks"]["vector_store"]["ok"]


def test_concurrent_probes_never_race_and_a_burst_is_answered_once(tmp_path, tiny_model) -> None:
    library = Library(_settings(tmp_path, tiny_model))
    try:
        with ThreadPoolExecutor(16) as pool:  # one shared probe file made two callers fail each other
            answers = list(pool.map(lambda _: library.backend.probe(), range(200)))
        assert answers == [{"backend": "faiss"}] * 200
        assert not list(library.stores_dir.glob(".health*"))  # no probe file left behind
        first = check_health(library)
        assert first["status"] == "ok" and all(check_health(library) is first for _ in range(50))
    finally:
        library.close()
