"""Writing files so that they survive a power cut: the bytes flushed to disk before the name
points at them, and the folder's entry flushed after (the FAISS stores, uploads and archives)."""

from __future__ import annotations

import os
from pathlib import Path


def sync_file(path: str | os.PathLike) -> None:
    """Flush a written file's bytes to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_folder(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a file created, renamed or removed in it) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move a fully written ``tmp`` onto ``path``: its bytes reach the disk first, then the rename."""
    sync_file(tmp)
    os.replace(tmp, path)
    sync_folder(Path(path).parent)
