"""A collection's reference folders: pictures under them are kept by every keep rule, are never
recorded as discarded and never moved to the trash (a library's masters, an archive of originals)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from indexer.catalog.models import Collection
from indexer.errors import InvalidRequest
from indexer.ingest.roots import is_under
from indexer.library import Library

MAX_REFERENCE_FOLDERS = 64


def check_folders(folders: Sequence[str]) -> list[str]:
    """The folders as stored (absolute, normalised, without duplicates), or InvalidRequest naming the
    first that is not an absolute path."""
    if not isinstance(folders, (list, tuple)) or len(folders) > MAX_REFERENCE_FOLDERS:
        raise InvalidRequest(f"reference folders must be a list of at most {MAX_REFERENCE_FOLDERS} absolute paths")
    out: list[str] = []
    for folder in folders:
        if not isinstance(folder, str) or not os.path.isabs(folder) or "\x00" in folder:
            raise InvalidRequest(f"reference folder {folder!r} is not an absolute path")
        normal = os.path.normpath(folder)
        if normal not in out:
            out.append(normal)
    return out


def in_reference_folders(collection: Collection, path: str) -> bool:
    """Whether ``path`` lies under one of the collection's reference folders."""
    return is_under(path, collection.reference_folders or ())


def get_reference_folders(library: Library, collection_name: str) -> list[str]:
    """The collection's reference folders, as stored."""
    with library.catalog.session() as s:
        return list(library.get_collection(s, collection_name).reference_folders or [])


def set_reference_folders(library: Library, collection_name: str, folders: Sequence[str]) -> list[str]:
    """Replace the collection's reference folders; returns them as stored."""
    checked = check_folders(folders)
    with library.catalog.session() as s:
        library.get_collection(s, collection_name).reference_folders = checked
    return checked
