"""``dinoseek index / search / duplicates / collections`` on real photos, driven as a user runs them.

Most cases call the CLI's ``main`` in-process (same argument parsing, settings from the
environment, JSON on stdout); one case runs the real console entry point in a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dinoseek.cli import main
from dinoseek.cli.library import _evidence_line
from indexer.verification import UNTOLD, Geometry
from model import arch_by_name, build_vit, save_checkpoint
from tests.support.photos import skimage_photo


@pytest.fixture
def env(tmp_path, tiny_model, monkeypatch) -> Path:
    for key in list(os.environ):
        if key.startswith("DINOSEEK_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DINOSEEK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DINOSEEK_MODEL", str(tiny_model))
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, dict | str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out), err
    except json.JSONDecodeError:
        return code, out, err


def _library(root: Path) -> dict[str, Path]:
    """Real photos in every supported format and mode, plus one edited copy."""
    root.mkdir(parents=True)
    coffee, rocket, astronaut = skimage_photo("coffee"), skimage_photo("rocket"), skimage_photo("astronaut")
    files = {
        "coffee": root / "coffee.jpg", "rocket_png": root / "rocket.png", "astronaut": root / "astronaut.webp",
        "chelsea_gif": root / "chelsea.gif", "camera_bmp": root / "camera.bmp", "coins_tif": root / "coins.tiff",
        "cmyk": root / "sub" / "cmyk.jpg", "palette_alpha": root / "sub" / "palette.png",
        "gray16": root / "sub" / "gray16.png", "rotated": root / "sub" / "rotated.jpg",
        "coffee_small": root / "sub" / "coffee_small.jpg",
    }
    (root / "sub").mkdir()
    coffee.save(files["coffee"], quality=92)
    rocket.save(files["rocket_png"])
    astronaut.save(files["astronaut"], quality=90)
    frames = [skimage_photo("chelsea").convert("P"), Image.new("P", skimage_photo("chelsea").size, 3)]
    frames[0].save(files["chelsea_gif"], save_all=True, append_images=frames[1:], duration=100)
    skimage_photo("camera").save(files["camera_bmp"])
    skimage_photo("coins").save(files["coins_tif"])
    coffee.convert("CMYK").save(files["cmyk"], quality=90)
    pal = rocket.convert("P", palette=Image.Palette.ADAPTIVE)
    pal.info["transparency"] = 0
    pal.save(files["palette_alpha"], transparency=0)
    arr16 = (np.asarray(skimage_photo("camera").convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(arr16).save(files["gray16"])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    exif[0x010F], exif[0x0110] = "TestCam", "Model 7"
    astronaut.resize((300, 200)).save(files["rotated"], exif=exif.tobytes(), quality=92)
    coffee.resize((coffee.width // 2, coffee.height // 2)).save(files["coffee_small"], quality=60)
    return files


def _bad_files(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    good = io.BytesIO()
    skimage_photo("chelsea").save(good, "JPEG", quality=90)
    bad = {"truncated": root / "truncated.jpg", "empty": root / "empty.png", "text": root / "notes.jpg",
           "bomb": root / "bomb.png"}
    bad["truncated"].write_bytes(good.getvalue()[: len(good.getvalue()) // 3])
    bad["empty"].write_bytes(b"")
    bad["text"].write_text("this is a text file with a .jpg name\n")
    Image.new("L", (4000, 3000)).save(bad["bomb"])  # 12 MP: over the limit the test sets
    return bad


def test_index_search_duplicates_collections(env, capsys) -> None:
    files = _library(env / "lib")
    code, doc, _ = run(capsys, "index", str(env / "lib"), "--collection", "photos", "--json")
    assert code == 0
    assert doc["collection"] == "photos" and doc["job_id"] is not None
    assert doc["scanned"] == len(files) and doc["indexed"] == len(files) and doc["failed"] == 0, doc

    # unchanged files are skipped; a changed file is re-embedded
    files["coffee_small"].touch()
    code, doc, _ = run(capsys, "index", str(env / "lib"), "--collection", "photos", "--json")
    assert (doc["indexed"], doc["skipped"]) == (0, len(files))  # same bytes, new mtime: no re-embedding
    skimage_photo("chelsea").save(files["coffee_small"], quality=80)
    code, doc, _ = run(capsys, "index", str(env / "lib"), "--collection", "photos", "--json")
    assert (doc["indexed"], doc["skipped"]) == (1, len(files) - 1)
    skimage_photo("coffee").resize((200, 133)).save(files["coffee_small"], quality=60)
    run(capsys, "index", str(env / "lib"), "--collection", "photos", "--json")

    # search by an edited copy (not indexed) finds its original first; paths are absolute
    query = env / "query.jpg"
    skimage_photo("rocket").resize((256, 170)).save(query, quality=50)
    code, doc, _ = run(capsys, "search", str(query), str(files["coffee"]), "--collection", "photos", "-k", "3",
                       "--json")
    assert code == 0 and [q["query"] for q in doc["queries"]] == [str(query), str(files["coffee"])]
    first = doc["queries"][0]["results"]
    assert first[0]["path"] in (str(files["rocket_png"]), str(files["palette_alpha"]))
    # verified by default: the copy says so, with where each picture lies in the other
    assert first[0]["box"] is None and first[0]["verdict"] == "copy", first[0]
    evidence = first[0]["evidence"]
    assert evidence["copy_probability"] >= 0.5 and evidence["inliers"] >= 12
    qx0, qy0, qx1, qy1 = evidence["query_box"]
    assert qx1 - qx0 >= 0.9 * 256 and qy1 - qy0 >= 0.9 * 170  # the whole original lies in the whole query
    rx0, ry0, rx1, ry1 = evidence["result_box"]
    assert rx0 < rx1 and ry0 < ry1
    # an indexed query file is left out of its own results
    assert str(files["coffee"]) not in [r["path"] for r in doc["queries"][1]["results"]]
    assert doc["queries"][1]["results"][0]["path"] in (str(files["coffee_small"]), str(files["cmyk"]))
    assert len(first) == 3
    # --no-verify: the descriptor's order as it is, no evidence
    code, doc, _ = run(capsys, "search", str(query), "--collection", "photos", "-k", "3", "--no-verify", "--json")
    plain = doc["queries"][0]["results"]
    assert all(set(r) == {"image_id", "path", "score", "box"} for r in plain)
    scores = [r["score"] for r in plain]
    assert scores == sorted(scores, reverse=True) and len(plain) == 3

    # duplicates: identical bytes are an exact group; the re-encoded CMYK coffee is a near copy of coffee
    shutil.copy(files["rocket_png"], env / "lib" / "rocket_copy.png")
    run(capsys, "index", str(env / "lib"), "--collection", "photos", "--json")
    code, doc, _ = run(capsys, "duplicates", "--collection", "photos", "--threshold", "0.95", "--json")
    assert code == 0
    exact = [g for g in doc["groups"] if g["kind"] == "exact"]
    assert [sorted(g["paths"]) for g in exact] == [sorted([str(files["rocket_png"]), str(env / "lib" / "rocket_copy.png")])]
    near = [set(g["paths"]) for g in doc["groups"] if g["kind"] == "near"]
    assert any({str(files["coffee"]), str(files["cmyk"])} <= g for g in near), doc["groups"]
    # with --threshold the descriptor cosine alone decides near: every near link is at least 0.95,
    # the score is the weakest link's copy probability, and the evidence names that link
    for g in doc["groups"]:
        if g["kind"] == "near":
            assert 0.5 <= g["score"] <= 1.0 and g["evidence"]["descriptor"] >= 0.95
            assert set(g["evidence"]["pair"]) <= set(g["image_ids"]) and -1 <= g["evidence"]["hash"] <= 1
        elif g["kind"] == "similar":  # other pictures within the similar margin below the threshold
            assert 0.8 <= g["score"] < 1.0 and g["evidence"]["verdict"] == "similar"
    assert doc["verdict_model"].startswith("descriptor threshold")

    code, doc, _ = run(capsys, "collections", "--json")
    (row,) = doc["collections"]
    assert row["name"] == "photos" and row["images"] == row["indexed"] == row["vectors"] == len(files) + 1
    assert row["failed"] == 0 and len(row["model"]) == 64


def test_every_format_decodes_with_metadata(env, capsys) -> None:
    from indexer.catalog.database import Catalog
    from indexer.catalog.models import Image as Row

    files = _library(env / "lib")
    run(capsys, "index", str(env / "lib"), "--collection", "formats", "--json")
    catalog = Catalog(f"sqlite:///{env / 'home' / 'dinoseek.db'}")
    with catalog.session() as s:
        rows = {r.path: r for r in s.query(Row)}
    catalog.dispose()
    fmt = {k: rows[str(p)].format for k, p in files.items()}
    assert fmt["coffee"] == "JPEG" and fmt["astronaut"] == "WEBP" and fmt["chelsea_gif"] == "GIF"
    assert fmt["camera_bmp"] == "BMP" and fmt["coins_tif"] == "TIFF" and fmt["rocket_png"] == "PNG"
    rotated = rows[str(files["rotated"])]
    assert (rotated.width, rotated.height, rotated.orientation) == (200, 300, 6)  # as displayed
    assert rotated.camera == "TestCam Model 7"
    assert rotated.patch_rows > rotated.patch_cols  # the grid is portrait too: orientation was applied
    assert all(r.status == "indexed" and len(r.sha256) == 64 for r in rows.values())


def test_bad_files_fail_alone_and_nothing_is_lost(env, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DINOSEEK_MAX_IMAGE_PIXELS", "10000000")
    files = _library(env / "lib")
    run(capsys, "index", str(env / "lib"), "--collection", "c", "--json")
    bad = _bad_files(env / "lib" / "bad")
    code, doc, _ = run(capsys, "index", str(env / "lib"), "--collection", "c", "--json")
    assert code == 0
    assert doc["failed"] == len(bad) and doc["skipped"] == len(files) and doc["indexed"] == 0
    errors = {e["path"]: e["error"] for e in doc["errors"]}
    assert set(errors) == {str(p) for p in bad.values()}
    assert "cannot decode" in errors[str(bad["truncated"])]
    assert "empty file" in errors[str(bad["empty"])]
    assert "not an image" in errors[str(bad["text"])]
    assert "over the limit" in errors[str(bad["bomb"])]
    code, doc, _ = run(capsys, "collections", "--json")
    (row,) = doc["collections"]
    assert (row["indexed"], row["failed"], row["vectors"]) == (len(files), len(bad), len(files))

    # a file that was indexed and then got corrupted fails, and stops being found
    good_bytes = files["coffee"].read_bytes()
    files["coffee"].write_bytes(good_bytes[:500])
    code, doc, _ = run(capsys, "index", str(env / "lib"), "--collection", "c", "--json")
    assert str(files["coffee"]) in {e["path"] for e in doc["errors"]}
    code, doc, _ = run(capsys, "search", str(files["cmyk"]), "--collection", "c", "-k", "20", "--json")
    assert str(files["coffee"]) not in [r["path"] for r in doc["queries"][0]["results"]]
    assert len(doc["queries"][0]["results"]) == len(files) - 2  # every other good image is still there


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_fails_alone(env, capsys) -> None:
    files = _library(env / "lib")
    files["coffee"].chmod(0)
    code, doc, _ = run(capsys, "index", str(env / "lib"), "--collection", "c", "--json")
    assert doc["failed"] == 1 and "cannot read file" in doc["errors"][0]["error"]


def test_prune_and_identical_bytes(env, capsys) -> None:
    files = _library(env / "lib")
    shutil.copy(files["coffee"], env / "lib" / "coffee_again.jpg")
    code, doc, _ = run(capsys, "index", str(env / "lib"), "--collection", "p", "--json")
    assert doc["indexed"] == len(files) + 1
    # identical bytes share one vector: searching with the original scores its twin at 1.0
    code, doc, _ = run(capsys, "search", str(files["coffee"]), "--collection", "p", "-k", "1", "--json")
    top = doc["queries"][0]["results"][0]
    assert top["path"] == str(env / "lib" / "coffee_again.jpg") and top["score"] == pytest.approx(1.0, abs=1e-4)
    files["rocket_png"].unlink()
    files["cmyk"].unlink()
    code, doc, _ = run(capsys, "index", str(env / "lib"), "--collection", "p", "--json")
    code, doc, _ = run(capsys, "collections", "--json")
    assert doc["collections"][0]["images"] == len(files) + 1  # without --prune nothing is removed
    code, out, _ = run(capsys, "index", str(env / "lib"), "--collection", "p", "--prune")
    assert "2 pruned" in out
    code, doc, _ = run(capsys, "collections", "--json")
    row = doc["collections"][0]
    assert row["images"] == row["vectors"] == len(files) - 1


def test_prune_touches_only_its_paths_and_refuses_what_looks_like_a_missing_share(env, capsys) -> None:
    """Issue 17, finding 6: a prune removes only rows under the job's paths; an emptied folder (a
    share not mounted), a folder now on another device, or more than half of the images gone
    stop it with nothing removed; --force prunes the mass deletion."""
    photos, other = env / "photos", env / "other"
    for folder, names in ((photos, ("coffee", "rocket", "astronaut", "chelsea")), (other, ("camera",))):
        folder.mkdir()
        for name in names:
            skimage_photo(name).save(folder / f"{name}.jpg", quality=90)
    run(capsys, "index", str(photos), str(other), "--collection", "c", "--json")
    (other / "camera.jpg").unlink()  # gone, but not under the pruned path: its row stays
    (photos / "chelsea.jpg").unlink()
    code, doc, _ = run(capsys, "index", str(photos), "--collection", "c", "--prune", "--json")
    assert code == 0 and doc["pruned"] == 1
    assert run(capsys, "collections", "--json")[1]["collections"][0]["images"] == 4

    hidden = env / "hidden"
    photos.rename(hidden)
    photos.mkdir()  # the mount point is there, the share is not
    code, _, err = run(capsys, "index", str(photos), "--collection", "c", "--prune")
    assert code == 2 and "is empty" in err and "nothing was removed" in err
    assert run(capsys, "collections", "--json")[1]["collections"][0]["images"] == 4
    photos.rmdir()
    hidden.rename(photos)

    for name in ("rocket", "astronaut"):  # two of the three left: more than half
        (photos / f"{name}.jpg").rename(env / f"{name}.jpg")
    code, _, err = run(capsys, "index", str(photos), "--collection", "c", "--prune")
    assert code == 2 and "2 of the 3 images" in err and "--force" in err
    assert run(capsys, "collections", "--json")[1]["collections"][0]["images"] == 4
    code, doc, _ = run(capsys, "index", str(photos), "--collection", "c", "--prune", "--force", "--json")
    assert code == 0 and doc["pruned"] == 2
    assert run(capsys, "collections", "--json")[1]["collections"][0]["images"] == 2


def test_prune_refuses_a_path_on_another_device_than_at_indexing(env, capsys) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(env).st_dev:
        pytest.skip("needs /dev/shm on a filesystem of its own")
    photos = env / "photos"
    photos.mkdir()
    for name in ("coffee", "rocket"):
        skimage_photo(name).save(photos / f"{name}.jpg", quality=90)
    library = env / "library"
    library.symlink_to(photos)
    run(capsys, "index", str(library), "--collection", "d", "--json")
    elsewhere = Path(tempfile.mkdtemp(dir=shm))
    try:
        shutil.copy(photos / "coffee.jpg", elsewhere / "coffee.jpg")  # another disk under the same path
        library.unlink()
        library.symlink_to(elsewhere)
        code, _, err = run(capsys, "index", str(library), "--collection", "d", "--prune")
        assert code == 2 and "another device" in err, err
        assert run(capsys, "collections", "--json")[1]["collections"][0]["images"] == 2
    finally:
        shutil.rmtree(elsewhere)


def test_collection_refuses_another_model(env, capsys, monkeypatch, tmp_path) -> None:
    _library(env / "lib")
    run(capsys, "index", str(env / "lib" / "sub"), "--collection", "m", "--json")
    other = tmp_path / "other.pt"
    torch.manual_seed(1)
    save_checkpoint(build_vit(arch_by_name("vitt14")), other)
    monkeypatch.setenv("DINOSEEK_MODEL", str(other))
    code, out, err = run(capsys, "index", str(env / "lib"), "--collection", "m", "--json")
    assert code == 2 and "holds vectors of model" in err and "reindex" in err
    code, out, err = run(capsys, "search", str(env / "lib" / "coffee.jpg"), "--collection", "m", "--json")
    assert code == 2 and "holds vectors of model" in err


def test_usage_errors_are_one_line(env, capsys) -> None:
    code, _, err = run(capsys, "search", str(env / "nope.jpg"), "--collection", "x")
    assert code == 2 and "nope.jpg" in err and err.count("\n") == 1
    _library(env / "lib")
    code, _, err = run(capsys, "search", str(env / "lib" / "coffee.jpg"), "--collection", "missing")
    assert code == 2 and "no collection named 'missing'" in err
    code, _, err = run(capsys, "index", str(env / "lib"), "--collection", "../escape")
    assert code == 2 and "invalid collection name" in err
    code, _, err = run(capsys, "index", str(env / "missing-dir"), "--collection", "x")
    assert code == 2 and "missing-dir" in err


def test_console_script_in_a_subprocess(env, tiny_model) -> None:
    _library(env / "lib")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DINOSEEK_")}
    environ.update(DINOSEEK_HOME=str(env / "home"), DINOSEEK_MODEL=str(tiny_model))
    proc = subprocess.run([sys.executable, "-m", "dinoseek.cli", "index", str(env / "lib"), "--collection", "s", "--json"],
                          capture_output=True, text=True, env=environ, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["indexed"] == 11


def test_embedded_qdrant_edge_backend_gives_the_same_answers(env, capsys, monkeypatch) -> None:
    files = _library(env / "lib")
    query = env / "query.jpg"
    skimage_photo("rocket").resize((256, 170)).save(query, quality=50)
    answers = {}
    for backend in ("faiss", "qdrant"):
        monkeypatch.setenv("DINOSEEK_VECTOR_BACKEND", backend)
        monkeypatch.setenv("DINOSEEK_HOME", str(env / f"home-{backend}"))
        code, doc, _ = run(capsys, "index", str(env / "lib"), "--collection", "q", "--json")
        assert code == 0 and doc["indexed"] == len(files)
        code, doc, _ = run(capsys, "search", str(query), "--collection", "q", "-k", "5", "--json")
        answers[backend] = [(r["path"], r["score"]) for r in doc["queries"][0]["results"]]
        code, doc, _ = run(capsys, "collections", "--json")
        assert doc["collections"][0]["vectors"] == len(files)
    assert (env / "home-qdrant" / "stores" / "q.global").is_dir()  # an Edge shard, not a FAISS file
    assert [p for p, _ in answers["faiss"]] == [p for p, _ in answers["qdrant"]]
    assert np.allclose([s for _, s in answers["faiss"]], [s for _, s in answers["qdrant"]], atol=1e-4)


def test_interrupted_run_keeps_what_was_checkpointed(env, capsys, monkeypatch) -> None:
    """Interrupt a run in its second batch: what was finished is kept (checkpointed on the way
    out), the rest stays ``pending``, and the next run embeds exactly those."""
    import indexer.jobs as jobs
    import indexer.jobs.chunks as index_run
    from dinoseek.settings import load_settings
    from indexer.library import Library

    files = _library(env / "lib")
    monkeypatch.setattr(index_run, "CHECKPOINT_SECONDS", 0.0)  # checkpoint after every batch
    library = Library(load_settings())
    library.embedder.batch_size = 1  # batches of 4 files: several checkpoints in one run

    def stop_after_first_batch(done: int, total: int) -> None:
        if done > 4:  # the second batch is embedded, but never checkpointed
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        jobs.index_paths(library, "c", [env / "lib"], progress=stop_after_first_batch, chunk_size=4)
    library.close()
    code, doc, _ = run(capsys, "collections", "--json")
    (row,) = doc["collections"]
    assert (row["images"], row["indexed"], row["vectors"]) == (len(files), 8, 8)
    code, doc, _ = run(capsys, "index", str(env / "lib"), "--collection", "c", "--json")
    assert (doc["indexed"], doc["skipped"], doc["failed"]) == (len(files) - 8, 8, 0)
    code, doc, _ = run(capsys, "collections", "--json")
    assert (doc["collections"][0]["indexed"], doc["collections"][0]["vectors"]) == (len(files), len(files))


def test_checkpoints_stretch_as_persisting_gets_slower() -> None:
    from indexer.jobs import CHECKPOINT_SECONDS, checkpoint_interval

    assert checkpoint_interval(0.2) == CHECKPOINT_SECONDS
    assert checkpoint_interval(12.0) == pytest.approx(120.0)  # a 12 s persist waits 2 min: 10% of the run


def test_a_groups_evidence_line_says_when_keypoints_were_too_few_to_match() -> None:
    """A thumbnail's link has no matches to count: the line says why, not "0/0 agree"."""
    untold = _evidence_line({"descriptor": 0.981, "hash": 1.0, "geometry": UNTOLD.to_json()})
    assert "too few keypoints to match" in untold and "agree" not in untold
    matched = _evidence_line({"descriptor": 0.9, "hash": 0.8, "geometry": Geometry(40, 31, 0.78, 0.2).to_json()})
    assert "31/40 keypoint matches agree" in matched
