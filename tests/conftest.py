"""Shared fixtures: real photographs shipped with scikit-image, and small seeded backbones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.support.photos import PHOTO_NAMES, skimage_photo
from tests.support.services import service_or_skip


@pytest.fixture(scope="session")
def photos() -> dict[str, Image.Image]:
    return {name: skimage_photo(name) for name in PHOTO_NAMES}


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the real PostgreSQL test database (DINOSEEK_TEST_DATABASE_URL or 127.0.0.1:5432/test)."""
    import os

    import sqlalchemy

    from indexer.catalog.database import make_engine

    url = os.environ.get("DINOSEEK_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")

    def probe() -> None:
        engine = make_engine(url)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
        engine.dispose()

    service_or_skip("PostgreSQL", probe)
    return url


@pytest.fixture
def fresh_postgres(postgres_url: str):
    """The test database emptied of every table before and after the test."""
    import sqlalchemy

    from indexer.catalog.database import make_engine

    def wipe() -> None:
        engine = make_engine(postgres_url)
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("drop schema public cascade; create schema public"))
        engine.dispose()

    wipe()
    yield postgres_url
    wipe()


@pytest.fixture
def redis_url() -> str:
    """A private database of the real Redis server (DINOSEEK_TEST_REDIS_URL or 127.0.0.1:6379),
    emptied before and after the test."""
    import os

    import redis

    base = os.environ.get("DINOSEEK_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    base = base.rsplit("/", 1)[0] if base.rsplit("/", 1)[-1].isdigit() else base
    url = f"{base}/13"

    def probe() -> None:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()

    service_or_skip("Redis", probe)
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def _seeded_tiny_model(path: Path, seed: int, image_size: int) -> Path:
    from model import arch_by_name, build_vit, save_checkpoint

    torch.manual_seed(seed)
    vit = build_vit(arch_by_name("vitt14"))
    vit.embed_defaults = {"image_size": image_size, "pooling": "cls+gem"}
    save_checkpoint(vit, path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A seeded ViT-Ti/14 checkpoint at 112 px: random weights still match resized/re-encoded copies."""
    return _seeded_tiny_model(tmp_path_factory.mktemp("model") / "tiny.pt", 0, 112)


@pytest.fixture(scope="session")
def other_tiny_model(tmp_path_factory) -> Path:
    """A second ViT-Ti/14 checkpoint (another seed, 98 px): what a collection is re-indexed with."""
    return _seeded_tiny_model(tmp_path_factory.mktemp("model") / "other.pt", 1, 98)
