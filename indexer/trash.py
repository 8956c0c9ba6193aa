"""The trash: discarded pictures moved, file and all, into a trash folder inside the allowed root (or
the uploads folder) they lie in, and removed from the index; restoring moves a file back to where it
was and indexes it again. A file outside the allowed roots and the uploads, or under one of the
collection's reference folders, is never moved."""

from __future__ import annotations

import os
import uuid

from sqlalchemy import select

from indexer.catalog.models import Collection, Image, TrashEntry, utcnow
from indexer.duplicates.reference import in_reference_folders
from indexer.durable import sync_folder
from indexer.errors import Forbidden, InvalidRequest, NotFound
from indexer.images import delete_image
from indexer.ingest.roots import is_under
from indexer.jobs import create_index_job
from indexer.library import Library
from indexer.readback import fixed_roots
from model.files import TRASH_FOLDER

MAX_TRASH_REQUEST = 1000  # pictures one request moves


def _json(entry: TrashEntry) -> dict:
    return {"id": entry.id, "image_id": entry.image_id, "original_path": entry.original_path, "filename": entry.client_name,
            "trash_path": entry.trash_path, "sha256": entry.sha256, "size_bytes": entry.size_bytes,
            "trashed_at": entry.trashed_at.isoformat() if entry.trashed_at else None,
            "restored_at": entry.restored_at.isoformat() if entry.restored_at else None,
            "restore_job_id": entry.restore_job_id}


def _root_of(library: Library, path: str) -> str:
    """The allowed root or uploads folder the file resolves under; Forbidden when none."""
    real = os.path.realpath(path)
    for root in sorted(fixed_roots(library.settings.allowed_roots, library.settings.home).resolved, key=len, reverse=True):
        if is_under(real, (root,)):  # the innermost root: the trash stays as near the file as it may
            return root
    raise Forbidden(f"{path} is not under DINOSEEK_ALLOWED_ROOTS or the uploads folder: it is never moved")


def trash_images(library: Library, collection_name: str, image_ids: list[int]) -> list[dict]:
    """Move each picture's file into ``<its root>/.dinoseek-trash/<collection>/`` and remove it from the
    index (vectors, then row); the trash entries. Checked for every picture before any is moved."""
    if not isinstance(image_ids, list) or not 1 <= len(image_ids) <= MAX_TRASH_REQUEST:
        raise InvalidRequest(f"image_ids must list 1 to {MAX_TRASH_REQUEST} images")
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        rows = {r.id: r for r in s.scalars(select(Image).where(Image.id.in_(image_ids),
                                                                Image.collection_id == collection.id))}
        missing = [i for i in image_ids if i not in rows]
        if missing:
            raise NotFound(f"no image {missing[0]} in collection {collection_name!r}")
        plans = []
        for image_id in dict.fromkeys(image_ids):
            row = rows[image_id]
            if in_reference_folders(collection, row.path):
                raise Forbidden(f"image {image_id} ({row.path}) lies in a reference folder of {collection_name!r}: "
                                "it is never moved to the trash")
            if not os.path.isfile(row.path) or os.path.islink(row.path):
                raise InvalidRequest(f"image {image_id}: {row.path} is not a regular file any more")
            root = _root_of(library, row.path)
            plans.append((row.id, row.path, os.path.realpath(row.path), root, row.sha256, row.size_bytes, row.client_name))
        collection_id = collection.id
    entries = []
    for image_id, path, real, root, sha256, size, client_name in plans:
        folder = os.path.join(root, TRASH_FOLDER, collection_name)
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, f"{uuid.uuid4().hex[:12]}-{os.path.basename(real)}")
        os.rename(real, target)
        try:
            delete_image(library, image_id)
        except BaseException:
            os.rename(target, real)  # the row stays: so does its file
            raise
        sync_folder(folder)
        sync_folder(os.path.dirname(real))
        with library.catalog.session() as s:
            entry = TrashEntry(collection_id=collection_id, image_id=image_id, original_path=path, trash_path=target,
                               sha256=sha256, size_bytes=size, client_name=client_name)
            s.add(entry)
            s.flush()
            entries.append(_json(entry))
    return entries


def list_trash(library: Library, collection_name: str, restored: bool = False) -> list[dict]:
    """The collection's trash entries still in the trash (``restored``: those restored too), newest first."""
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        query = select(TrashEntry).where(TrashEntry.collection_id == collection.id)
        if not restored:
            query = query.where(TrashEntry.restored_at.is_(None))
        return [_json(e) for e in s.scalars(query.order_by(TrashEntry.id.desc()))]


def restore_entry(library: Library, entry_id: int, chunk_size: int) -> tuple[dict, int]:
    """Move a trashed file back to its path and record an index job for it; the entry and the job's id
    (the caller starts it). Refused when the entry was restored already or its path is taken."""
    with library.catalog.session() as s:
        entry = s.get(TrashEntry, entry_id)
        if entry is None:
            raise NotFound(f"no trash entry {entry_id}")
        if entry.restored_at is not None:
            raise InvalidRequest(f"trash entry {entry_id} was restored already (job {entry.restore_job_id})")
        collection_name, entry_collection = s.get(Collection, entry.collection_id).name, entry.collection_id
        original, trashed, client_name = entry.original_path, entry.trash_path, entry.client_name
    if os.path.lexists(original):
        raise InvalidRequest(f"trash entry {entry_id}: {original} exists again; move it away first")
    if not os.path.isfile(trashed) or os.path.islink(trashed):
        raise NotFound(f"trash entry {entry_id}: its file {trashed} is gone")
    _root_of(library, trashed)
    os.makedirs(os.path.dirname(original), exist_ok=True)
    os.rename(trashed, original)
    sync_folder(os.path.dirname(original))
    with library.catalog.session() as s:  # the row first, with the upload's name: the job indexes it
        s.add(Image(collection_id=entry_collection, path=original, status="pending", client_name=client_name))
    job_id = create_index_job(library, collection_name, [original], chunk_size=chunk_size)
    with library.catalog.session() as s:
        entry = s.get(TrashEntry, entry_id)
        entry.restored_at, entry.restore_job_id = utcnow(), job_id
        s.flush()
        return _json(entry), job_id
