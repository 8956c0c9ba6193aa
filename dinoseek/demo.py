"""``make demo``: build a small real library, embed it, and show that edited copies find their source.

The library is scikit-image's bundled photographs plus edited copies of each (crop, resize,
letterbox padding, rotation, grayscale, heavy JPEG, text overlay). Each copy's nearest original
is looked up by cosine similarity of the global descriptors.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageOps

from dinoseek.settings import load_settings
from indexer.duplicates import find_duplicates
from indexer.jobs import index_paths
from indexer.library import Library
from indexer.query import search_files
from model import CheckpointError, arch_by_name, build_vit, save_checkpoint
from model.checkpoint import DEFAULT_CHECKPOINT

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")


def _edits(img: Image.Image) -> dict[str, Image.Image]:
    w, h = img.size
    text = img.copy()
    ImageDraw.Draw(text).text((w // 10, h // 2), "dinoseek demo  #42", fill=(255, 255, 0))
    return {
        "crop70": img.crop((int(0.15 * w), int(0.15 * h), int(0.85 * w), int(0.85 * h))),
        "half": img.resize((w // 2, h // 2)),
        "letterbox": ImageOps.pad(img, (max(w, h), max(w, h)), color=(0, 0, 0)),
        "rot10": img.rotate(10, expand=True, fillcolor=(255, 255, 255)),
        "gray": ImageOps.grayscale(img).convert("RGB"),
        "text": text,
    }


def build_library(folder: Path) -> tuple[list[Path], list[tuple[Path, Path]]]:
    """Write originals and edited copies; return the originals and (copy, its source) pairs."""
    import skimage.data  # lazy: the demo extra, needed by this command alone

    originals, copies = [], []
    for name in PHOTOS:
        arr = getattr(skimage.data, name)()
        img = Image.fromarray(arr).convert("RGB")
        src = folder / "originals" / f"{name}.jpg"
        src.parent.mkdir(parents=True, exist_ok=True)
        img.save(src, quality=92)
        originals.append(src)
        for edit, copy in _edits(img).items():
            dst = folder / "copies" / f"{name}_{edit}.jpg"
            dst.parent.mkdir(parents=True, exist_ok=True)
            copy.save(dst, quality=35 if edit == "half" else 85)
            copies.append((dst, src))
    return originals, copies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint path or name (default: DINOSEEK_MODEL, then the shipped model)")
    parser.add_argument("--library", type=Path, help="folder to write the demo library to (default: a temp dir)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        # a throwaway catalog and index: the demo never touches the user's own DINOSEEK_HOME
        settings = replace(load_settings(), home=Path(tmp) / "home",
                           database_url=f"sqlite:///{Path(tmp) / 'home' / 'dinoseek.db'}", vector_backend="faiss")
        if args.model:
            settings = replace(settings, model=args.model)
        elif not settings.model and not DEFAULT_CHECKPOINT.exists():
            torch.manual_seed(0)
            random_model = Path(tmp) / "random-vits14.pt"
            save_checkpoint(build_vit(arch_by_name("vits14")), random_model)
            settings = replace(settings, model=str(random_model))
            print("no trained model installed: using a randomly initialised ViT-S/14 (a pipeline check, "
                  "not a quality figure)")
        folder = args.library or Path(tmp) / "library"
        originals, copies = build_library(folder)
        library = Library(settings)
        try:
            start = time.perf_counter()
            report = index_paths(library, "demo", [folder / "originals"])
            elapsed = time.perf_counter() - start
        except CheckpointError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 2
        emb = library.embedder
        print(f"model: {emb.vit.checkpoint_path} ({emb.dim}-d {emb.pooling} descriptor at {emb.image_size} px)")
        print(f"indexed {report.indexed} photos of {folder / 'originals'} in {elapsed:.1f}s, {report.failed} failed")
        results = search_files(library, "demo", [c for c, _ in copies], k=1)
        hits = 0
        print(f"searching with {len(copies)} edited copies (not indexed):")
        for (copy, src), res in zip(copies, results):
            top = res.results[0] if res.results else None
            ok = top is not None and top.path == str(src)
            hits += ok
            found = f"{Path(top.path).name:26s} {top.score:.3f}" if top else "(nothing)"
            print(f"  {'ok ' if ok else 'MISS'} {copy.name:34s} -> {found}")
        print(f"edited copies whose first result is their source: {hits}/{len(copies)}")
        report = index_paths(library, "demo", [folder / "copies"])
        groups = find_duplicates(library, "demo")
        print(f"after indexing the copies too: {len(groups)} duplicate groups")
        for g in groups:
            names = ", ".join(sorted(Path(p).name for p in g.paths))
            ev = g.evidence or {}
            why = ""
            if ev:
                geometry = ev.get("geometry") or {}
                why = (f" [descriptor {ev['descriptor']:.2f}, hash {ev['hash'] if ev['hash'] is None else round(ev['hash'], 2)}"
                       + (f", {geometry['inliers']} keypoints agree" if geometry else "") + "]")
            print(f"  {g.kind} ({g.score:.3f}, {len(g.paths)} images): {names}{why}")
        library.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
