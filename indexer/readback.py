"""Reading an indexed picture back from the path the catalog stores (thumbnails, region and
duplicate verification from files): the path is resolved at read time and read only when it still
lies under a folder the server may read — one its collection's index jobs were given, the uploads
folder, or an allowed root — and is then opened without following a symlink. So an indexed file
swapped for a link to another file, or an imported catalog edited to name one, reads nothing.
Folders indexed with ``--follow-symlinks`` are the exception their owner chose: links under them
are followed wherever they lead, as indexing followed them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer.catalog.models import Job
from indexer.ingest.reading import LoadedImage, read_bytes, read_image
from indexer.ingest.roots import is_under
from indexer.library import Library
from model.preprocess import ImageDecodeError


@dataclass(frozen=True)
class Roots:
    """Where files may be read back from: under ``resolved`` once every link is resolved, or
    anywhere a link under ``linked`` (roots indexed with --follow-symlinks) leads."""

    resolved: tuple[str, ...]
    linked: tuple[str, ...] = ()

    def __add__(self, other: Roots) -> Roots:
        return Roots(self.resolved + other.resolved, self.linked + other.linked)


def fixed_roots(allowed_roots: tuple[Path, ...], home: Path) -> Roots:
    """The folders any collection's files may be read back from: the allowed roots and the uploads folder."""
    return Roots(tuple(os.path.realpath(p) for p in (*allowed_roots, home / "uploads")))


def collection_roots(session: Session, collection_id: int) -> Roots:
    """The paths the collection's index jobs were given (folders or single files), resolved (only
    index jobs record ``paths``: no kind name is compared outside indexer/jobs)."""
    resolved: set[str] = set()
    linked: set[str] = set()
    for params in session.scalars(select(Job.params).where(Job.collection_id == collection_id)):
        paths = [p for p in (params or {}).get("paths", []) if isinstance(p, str)]
        resolved.update(_resolved_root(p) for p in paths)
        if (params or {}).get("follow_symlinks"):
            linked.update(os.path.abspath(p) for p in paths)
    return Roots(tuple(sorted(resolved)), tuple(sorted(linked)))


def _resolved_root(path: str) -> str:
    """A path an index job was given, resolved: a folder wholly (an indexed link to a folder is the
    owner's choice), a file through its folder only, so a file swapped for a link later does not
    make the link's target a root of its own."""
    if os.path.isdir(path):
        return os.path.realpath(path)
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def _where(path: str, roots: Roots) -> tuple[str, bool]:
    """The path to open for ``path`` and whether to open it without following a link, if it may be
    read back (resolves under ``roots``, or lies under a root whose links were followed); else
    ImageDecodeError naming both paths."""
    real = os.path.realpath(path)
    if is_under(real, roots.resolved):
        return real, True
    if is_under(os.path.abspath(path), roots.linked):
        return path, False
    raise ImageDecodeError(f"{path}: resolves to {real}, outside the folders this collection indexed, the uploads and "
                           "DINOSEEK_ALLOWED_ROOTS; not read")


def read_back(path: str, roots: Roots, max_pixels: int, max_mb: int, target_long_side: int | None = None) -> LoadedImage:
    """The indexed picture at ``path``, read as indexing reads it, if it resolves under ``roots``
    (opened with O_NOFOLLOW, so a link put in place after the check is refused too) or lies under
    a root whose links were followed; else ImageDecodeError naming both paths."""
    where, nofollow = _where(path, roots)
    return read_image(where, max_pixels, target_long_side=target_long_side, max_mb=max_mb, nofollow=nofollow)


def read_back_bytes(path: str, roots: Roots, max_mb: int) -> bytes:
    """The indexed file's bytes, undecoded (an original served as it is), under the rules of ``read_back``."""
    where, nofollow = _where(path, roots)
    return read_bytes(where, max_mb, nofollow)[0]


def readable_roots(library: Library, collection_id: int) -> Roots:
    """Every folder the collection's files may be read back from (``fixed_roots`` and ``collection_roots``)."""
    with library.catalog.session() as s:
        return fixed_roots(library.settings.allowed_roots, library.settings.home) + collection_roots(s, collection_id)
