"""A plain install (no ``[cpu]`` / ``[gpu]`` extra, so no FAISS) indexes and searches with the
embedded default, Qdrant Edge; each collection keeps the kind of store it was created with when
FAISS comes and goes (issue 17, "a plain install must work")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.photos import skimage_photo

# Imported before anything else by every Python started with this folder on PYTHONPATH: `import faiss`
# fails as it does where the package is not installed.
NO_FAISS = '''
import importlib.abc, sys

class _NoFaiss(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "faiss" or name.startswith("faiss."):
            raise ModuleNotFoundError("No module named 'faiss'", name=name)
        return None

sys.meta_path.insert(0, _NoFaiss())
'''


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dinoseek.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def _json(env: dict, *args: str) -> dict:
    done = _cli(env, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_without_faiss_the_default_is_qdrant_edge_and_each_collection_keeps_its_kind(tmp_path, tiny_model) -> None:
    shim = tmp_path / "no-faiss"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(NO_FAISS)
    home = tmp_path / "home"
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DINOSEEK_HOME": str(home),
            "DINOSEEK_MODEL": str(tiny_model), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    plain = dict(base, PYTHONPATH=f"{shim}:{base['PYTHONPATH']}")
    assert subprocess.run([sys.executable, "-c", "import faiss"], env=plain, capture_output=True).returncode != 0

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("coffee", "rocket", "astronaut"):
        skimage_photo(name).save(photos / f"{name}.jpg", quality=92)
    query = tmp_path / "query.jpg"
    skimage_photo("rocket").resize((300, 200)).save(query, quality=80)

    report = _json(plain, "index", str(photos), "--collection", "plain")
    assert report["indexed"] == 3 and report["failed"] == 0
    assert (home / "stores" / "plain.global" / "edge_config.json").exists()  # an Edge shard
    assert not list((home / "stores").glob("*.faiss"))
    hits = _json(plain, "search", str(query), "--collection", "plain", "-k", "1")["queries"][0]["results"]
    assert Path(hits[0]["path"]).name == "rocket.jpg"

    # FAISS installed later (the [cpu] extra): the Edge collection stays in Edge, new ones go to FAISS
    listed = {c["name"]: c for c in _json(base, "collections")["collections"]}
    assert listed["plain"]["vector_backend"] == "qdrant-edge" and listed["plain"]["vectors"] == 3
    again = _json(base, "search", str(query), "--collection", "plain", "-k", "1")["queries"][0]["results"]
    assert Path(again[0]["path"]).name == "rocket.jpg"
    _json(base, "index", str(photos), "--collection", "withfaiss")
    listed = {c["name"]: c for c in _json(base, "collections")["collections"]}
    assert listed["withfaiss"]["vector_backend"] == "faiss" and listed["withfaiss"]["vectors"] == 3
    assert (home / "stores" / "withfaiss.global.faiss").exists()

    # FAISS gone again: its collection is refused by name, never served from an empty store of another kind
    refused = _cli(plain, "search", str(query), "--collection", "withfaiss")
    assert refused.returncode != 0 and "FAISS is not installed" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    still = _json(plain, "search", str(query), "--collection", "plain", "-k", "1")["queries"][0]["results"]
    assert Path(still[0]["path"]).name == "rocket.jpg"
