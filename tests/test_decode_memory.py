"""Decode memory is bounded (issue 17, finding 3): a ~200 kB 16-bit 10000 x 10000 PNG that passes the
pixel cap decodes within its stated footprint (model/decode_memory.py) instead of through float64
copies (~3 GB before), a picture larger than the whole budget fails alone with the reason, and
concurrent decodes wait for room in the process's budget."""

from __future__ import annotations

import importlib.util
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dinoseek.settings import load_settings
from indexer.ingest.reading import DEFAULT_DECODE_MEMORY_MB, read_image, set_decode_memory
from indexer.jobs import index_paths
from indexer.library import Library
from model.decode_memory import MB, DecodeBudget, DecodeTooLarge, decode_footprint
from model.preprocess import ImageDecodeError, _integer_to_8bit
from tests.support.photos import skimage_photo

# the measurement bench/decode_memory.py prints, loaded from its file (bench/ is not a package)
_spec = importlib.util.spec_from_file_location("decode_memory_bench", Path(__file__).parents[1] / "bench/decode_memory.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_hostile_high_depth_pictures_decode_within_their_footprint(tmp_path) -> None:
    bench.hostile(tmp_path, 10_000)  # a 16-bit PNG of 10000 x 10000, a float TIFF and an RGB PNG of 6000 x 6000
    assert (tmp_path / "grey16.png").stat().st_size < 2 * MB
    for name, budget_mb in (("grey16.png", 1500), ("float32.tif", 800)):
        peak = bench.peak_decode(tmp_path / name)
        assert peak["grown_mb"] <= peak["footprint_mb"] <= budget_mb, (name, peak)
    assert peak["size"] == [6_000, 6_000]


def test_a_picture_over_the_whole_budget_fails_alone_with_the_reason(tmp_path, tiny_model) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    skimage_photo("coffee").save(folder / "coffee.jpg", quality=90)
    Image.fromarray(np.zeros((4_000, 4_000), dtype=np.uint16)).save(folder / "deep.png")
    settings = replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                       model=str(tiny_model), decode_memory_mb=100)
    library = Library(settings)
    try:
        report = index_paths(library, "lib", [folder])
    finally:
        library.close()
        set_decode_memory(DEFAULT_DECODE_MEMORY_MB)
    assert (report.indexed, report.failed) == (1, 1)
    (error,) = report.errors
    assert error["path"].endswith("deep.png")
    assert "over the decode memory budget of 100 MB (DINOSEEK_DECODE_MEMORY_MB)" in error["error"]
    set_decode_memory(100)
    try:
        with pytest.raises(ImageDecodeError, match="deep.png: image too large"):
            read_image(folder / "deep.png")
    finally:
        set_decode_memory(DEFAULT_DECODE_MEMORY_MB)


def test_decodes_wait_for_room_in_the_budget() -> None:
    budget = DecodeBudget(100)
    order = []
    held = threading.Event()

    def first() -> None:
        with budget.reserve(70):
            held.set()
            time.sleep(0.3)
            order.append("first done")

    def second() -> None:
        held.wait()
        with budget.reserve(70):  # does not fit beside the first: waits for it
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order == ["first done", "second in"] and budget.used == 0
    with pytest.raises(DecodeTooLarge, match="over the decode memory budget"):
        with budget.reserve(101):
            pass


def test_high_depth_levels_map_as_before_without_float_copies() -> None:
    rng = np.random.default_rng(0)
    for values in (rng.integers(0, 65536, 10_000).astype(np.uint16), rng.integers(0, 256, 10_000).astype(np.uint16),
                   rng.integers(-5, 70_000, 10_000).astype(np.int32)):
        as_float = values.astype(np.float64)
        top = 65535.0 if as_float.max() > 255 else 255.0
        expected = np.clip(as_float / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        assert np.array_equal(_integer_to_8bit(values), expected)
    assert decode_footprint(Image.new("I;16", (100, 100))) == 100 * 100 * (2 * 2 + 4 + 5)
