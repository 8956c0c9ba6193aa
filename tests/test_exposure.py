"""What the product hands out by accident (issue 17, finding 17): settings printed or logged show
no key or password, a broker URL in a message is masked, only the listed picture formats are ever
decoded, and serving without auth on a reachable address says so loudly."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import pytest
from PIL import Image

from dinoseek.settings import load_settings, redacted_url
from indexer.ingest.reading import FileStat, decode_bytes
from model.preprocess import ImageDecodeError
from tests.support.photos import skimage_photo
from tests.support.processes import worker_env
from tests.support.services import free_port


def test_settings_print_no_secret() -> None:
    settings = load_settings({"DINOSEEK_API_KEYS": "first-key-0123456789,second-key-0123456789:ro",
                              "DINOSEEK_DATABASE_URL": "postgresql://dinoseek:db-password-0123456@db/dinoseek",
                              "DINOSEEK_BROKER_URL": "redis://:broker-password-0123456@redis:6379/0",
                              "DINOSEEK_QDRANT_API_KEY": "qdrant-key-0123456789"})
    shown = repr(settings) + str(settings)
    for secret in ("first-key", "second-key", "db-password", "broker-password", "qdrant-key"):
        assert secret not in shown, shown
    assert "api_keys='<2 keys>'" in shown and "postgresql://dinoseek:***@db/dinoseek" in shown
    assert "redis://:***@redis:6379/0" in shown and "max_file_mb=512" in shown


def test_urls_are_masked_only_where_they_hold_a_password() -> None:
    assert redacted_url("redis://user:pw@host:1/0") == "redis://user:***@host:1/0"
    assert redacted_url("redis://host:6379/0") == "redis://host:6379/0"
    assert redacted_url(None) is None


@pytest.mark.parametrize("fmt", ["PPM", "ICO", "PCX", "TGA", "DDS"])
def test_formats_outside_the_list_are_not_decoded(fmt) -> None:
    data = io.BytesIO()
    skimage_photo("coffee").resize((64, 48)).save(data, fmt)
    assert Image.open(io.BytesIO(data.getvalue())).format == fmt  # Pillow itself would decode it
    with pytest.raises(ImageDecodeError, match="not one of the formats read .JPEG, PNG"):
        decode_bytes(f"a.{fmt.lower()}", data.getvalue(), FileStat(len(data.getvalue()), 0))


def test_serving_without_auth_on_a_reachable_address_warns(tmp_path, tiny_model) -> None:
    env = worker_env(tmp_path / "home", tiny_model, None)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "dinoseek.cli", "serve", "--insecure-no-auth", "--host", "0.0.0.0",
                               "--port", str(port), "--dev"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline, seen = time.monotonic() + 120, ""
        while "WARNING" not in seen and time.monotonic() < deadline and server.poll() is None:
            seen += server.stderr.readline()
    finally:
        server.kill()
        server.wait()
    assert "WARNING: --insecure-no-auth on 0.0.0.0, which is not a loopback address" in seen
