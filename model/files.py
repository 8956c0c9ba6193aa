"""Walking user-supplied paths for image files (shared by training and the indexer)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)
# The Pillow formats those are (the JPEG opener also reads a camera's multi-picture MPO files; HEIF
# and AVIF once their plugin is there); no other decoder is ever tried, so a file of any other of
# Pillow's dozens of formats (PSD, EPS, FITS...) is refused before decoding.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF")
# The folder the duplicate review moves discarded pictures to, inside the root they lay in: never
# walked, so trashed pictures are not indexed again.
TRASH_FOLDER = ".dinoseek-trash"


def iter_image_paths(paths: Iterable[str | os.PathLike], follow_symlinks: bool = False) -> Iterator[Path]:
    """Absolute paths of image files under ``paths``, sorted per folder, each file once.

    Files named explicitly are yielded whatever their extension (the decoder will judge them);
    folders are walked recursively for known image extensions, but for TRASH_FOLDER. A path that does not exist raises
    ``FileNotFoundError`` naming it, before anything is yielded.
    """
    roots = [Path(os.path.abspath(Path(p).expanduser())) for p in paths]
    missing = [str(r) for r in roots if not r.exists() and not r.is_symlink()]
    if missing:
        raise FileNotFoundError(f"no such file or directory: {', '.join(missing)}")
    seen: set[Path] = set()
    for root in roots:
        if not root.is_dir():
            if root not in seen:
                seen.add(root)
                yield root
            continue
        for folder, dirs, files in os.walk(root, followlinks=follow_symlinks):
            dirs[:] = sorted(d for d in dirs if d != TRASH_FOLDER)
            for name in sorted(files):
                path = Path(folder) / name
                if path.suffix.lower() not in IMAGE_EXTENSIONS or path in seen:
                    continue
                if path.is_symlink() and not follow_symlinks:
                    continue
                seen.add(path)
                yield path
