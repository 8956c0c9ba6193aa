"""The request-latency metric's labels come from fixed sets, over real HTTP: no client, with or
without a key, can add series by sending made-up methods or paths (issue 17, finding 2)."""

from __future__ import annotations

import re
from dataclasses import replace

import httpx

from api import create_app
from dinoseek.settings import load_settings
from tests.support.services import serving


def _series(text: str) -> set[tuple[str, str]]:
    """(method, route) of every latency series in a Prometheus scrape."""
    return set(re.findall(r'dinoseek_http_request_duration_seconds_count\{method="([^"]*)",route="([^"]*)"', text))


def test_made_up_methods_and_unauthenticated_requests_add_no_series(tmp_path, tiny_model) -> None:
    settings = replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                       model=str(tiny_model), api_keys=("metrics-test-key-01234",))
    key = {"X-API-Key": "metrics-test-key-01234"}
    with serving(create_app(settings)) as base:
        with httpx.Client(timeout=30) as client:
            assert client.get(f"{base}/collections", headers=key).status_code == 200
            before = _series(client.get(f"{base}/metrics", headers=key).text)
            for i in range(40):
                assert client.request(f"X{i}", f"{base}/collections").status_code == 401  # no key
                assert client.get(f"{base}/collections/c{i}/nothing-here").status_code == 401
                client.request(f"Y{i}", f"{base}/collections", headers=key)  # a key, a made-up method
                client.get(f"{base}/made/up/{i}", headers=key)  # a key, a made-up path
            after = _series(client.get(f"{base}/metrics", headers=key).text)
    added = after - before
    assert {method for method, _ in after} <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    assert added <= {("other", "unauthenticated"), ("GET", "unauthenticated"), ("other", "unmatched"),
                     ("GET", "unmatched"), ("GET", "/api/v1/metrics")}, added
    assert ("other", "unauthenticated") in added and ("GET", "unmatched") in added
