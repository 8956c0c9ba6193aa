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
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

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
    import skimage.data

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

    from dinoseek.settings import load_settings
    from model import CheckpointError, Embedder, arch_by_name, build_vit, load_backbone

    settings = load_settings()
    try:
        vit = load_backbone(args.model or settings.model, search_dirs=[settings.models_dir])
        label = vit.checkpoint_path
    except CheckpointError as exc:
        if args.model:
            print(f"demo: {exc}", file=sys.stderr)
            return 2
        import torch

        torch.manual_seed(0)
        vit = build_vit(arch_by_name("vits14")).eval()
        label = "randomly initialised ViT-S/14 (no trained model installed: a pipeline check, not a quality figure)"

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.library or Path(tmp)
        originals, copies = build_library(folder)
        embedder = Embedder(vit, device=settings.device)
        start = time.perf_counter()
        out = embedder.embed_paths([*originals, *(c for c, _ in copies)])
        elapsed = time.perf_counter() - start
        index = {p: i for i, p in enumerate(out.paths)}
        refs = np.stack([out.vectors[index[str(p)]] for p in originals])
        print(f"model: {label}")
        print(f"library: {len(originals)} photos + {len(copies)} edited copies in {folder}")
        print(f"embedded {len(out.paths)} images in {elapsed:.1f}s ({len(out.paths) / elapsed:.1f} images/s), "
              f"{embedder.dim}-d descriptors, {len(out.errors)} failed")
        hits = 0
        for copy, src in copies:
            sims = refs @ out.vectors[index[str(copy)]]
            best = int(sims.argmax())
            ok = originals[best] == src
            hits += ok
            print(f"  {'ok ' if ok else 'MISS'} {copy.name:34s} → {originals[best].name:26s} {sims[best]:.3f}")
        print(f"edited copies whose nearest original is their source: {hits}/{len(copies)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
