"""Property-based fuzzing of the API from its own OpenAPI document (schemathesis): whatever the
request, no 5xx, and every response conforms to the schema the document declares for it."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.support.photos import skimage_photo

KEY = {"Authorization": "Bearer fuzz-test-key-0123456"}


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory, tiny_model):
    from api import create_app
    from dinoseek.settings import load_settings

    root = tmp_path_factory.mktemp("fuzz")
    (root / "served").mkdir()
    skimage_photo("coffee").save(root / "served" / "coffee.jpg")
    settings = replace(load_settings({}), home=root / "home", database_url=f"sqlite:///{root / 'home' / 'c.db'}",
                       model=str(tiny_model), api_keys=("fuzz-test-key-0123456",), allowed_roots=(root / "served",))
    app = create_app(settings)
    client = app.test_client()
    client.post("/api/v1/collections", json={"name": "photos"}, headers=KEY)
    buf = io.BytesIO()
    skimage_photo("rocket").save(buf, "JPEG")
    client.post("/api/v1/collections/photos/images", headers=KEY, content_type="multipart/form-data",
                data={"files": [(io.BytesIO(buf.getvalue()), "rocket.jpg")]})
    app.extensions["dinoseek"].jobs.wait_for_background_jobs(timeout=120)
    yield app
    app.extensions["dinoseek"].close()


def test_no_server_errors_and_responses_match_the_document(fuzz_app) -> None:
    """Every operation of the document, 25 generated requests each (valid and invalid ones)."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_app, headers=KEY)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case) -> None:
            response = case.call(headers=KEY)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}")
                return
            case.validate_response(response, checks=(response_schema_conformance, status_code_conformance),
                                   headers=KEY)

        run()
    assert not failures, "\n".join(failures[:10])
