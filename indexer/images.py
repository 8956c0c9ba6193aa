"""One image of the catalog: its description, its thumbnail, and deleting it (row and vectors)."""

from __future__ import annotations

import io
from contextlib import ExitStack

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select

from indexer.catalog.models import Collection, Image
from indexer.errors import Busy, InvalidRequest, NotFound
from indexer.library import Library
from indexer.readback import read_back, readable_roots
from indexer.stores.patches import all_patch_ids
from model.preprocess import ImageDecodeError

MAX_THUMBNAIL = 1024
DELETE_LOCK_SECONDS = 5.0  # how long a delete waits for the collection's writer lock (a job holds it for its run)


def image_metadata(row: Image) -> dict:
    """What the catalog knows of an image's file and picture, as results and the API show it."""
    return {"filename": row.client_name, "format": row.format, "width": row.width, "height": row.height,
            "sha256": row.sha256, "size_bytes": row.size_bytes,
            "taken_at": row.taken_at.isoformat() if row.taken_at else None, "camera": row.camera,
            "indexed_at": row.indexed_at.isoformat() if row.indexed_at else None}


def image_json(row: Image, collection: str) -> dict:
    """An image as the API shows it: where it is, its state, and its metadata."""
    return {"id": row.id, "collection": collection, "path": row.path, "status": row.status, "error": row.error,
            "metadata": image_metadata(row)}


def _row(s, image_id: int) -> tuple[Image, Collection]:
    row = s.get(Image, image_id)
    if row is None:
        raise NotFound(f"no image with id {image_id}")
    return row, s.get(Collection, row.collection_id)


def get_image(library: Library, image_id: int) -> dict:
    """The image as the API shows it (``image_json``); NotFound for an unknown id."""
    with library.catalog.session() as s:
        row, collection = _row(s, image_id)
        return image_json(row, collection.name)


def delete_image(library: Library, image_id: int, wait: float = DELETE_LOCK_SECONDS) -> dict:
    """Remove an image's vectors, then its row (and its duplicate-group memberships); returns what it was.
    Takes the collection's writer lock (embedded stores have one writer at a time), waiting at
    most ``wait`` seconds: while a job writes the collection, Busy instead of a request that hangs."""
    with library.catalog.session() as s:
        row, collection = _row(s, image_id)
        doc, name = image_json(row, collection.name), collection.name
    with ExitStack() as held:
        try:
            held.enter_context(library.writer_lock(name, timeout=wait))
        except Busy:
            raise Busy(f"image {image_id} cannot be deleted now: collection {name!r} is being written (a job is "
                       "indexing it); try again when the job is done") from None
        with library.catalog.session() as s:
            collection = s.scalar(select(Collection).where(Collection.name == name))
            stores = library.stores_for(s, collection)
        if stores is not None:
            stores.global_.delete(np.array([image_id]))
            stores.patches.delete(all_patch_ids([image_id]))
            stores.persist()
            library.hand_back_stores(name)
        with library.catalog.session() as s:
            s.execute(Image.__table__.delete().where(Image.id == image_id))
    return doc


def read_picture(library: Library, image_id: int, collection_name: str | None = None,
                 target_long_side: int | None = None) -> PILImage.Image:
    """An indexed image's picture, read from its file as indexing reads it (``target_long_side``:
    JPEGs may decode reduced, never below it). NotFound for an id unknown (in ``collection_name``,
    when given) or a file no longer readable."""
    with library.catalog.session() as s:
        if collection_name is None:
            row, _ = _row(s, image_id)
        else:
            row = s.get(Image, image_id)
            if row is None or row.collection_id != library.get_collection(s, collection_name).id:
                raise NotFound(f"no image {image_id} in collection {collection_name!r}")
        path, collection_id = row.path, row.collection_id
    try:
        return read_back(path, readable_roots(library, collection_id), library.settings.max_image_pixels,
                         library.settings.max_file_mb, target_long_side=target_long_side).image
    except ImageDecodeError as exc:
        raise NotFound(f"image {image_id}: its file is no longer readable ({exc})") from exc


def thumbnail(library: Library, image_id: int, size: int = 256) -> bytes:
    """A JPEG of the image, oriented, at most ``size`` pixels on its long side."""
    if not 16 <= size <= MAX_THUMBNAIL:
        raise InvalidRequest(f"size must be from 16 to {MAX_THUMBNAIL} pixels, got {size}")
    picture = read_picture(library, image_id, target_long_side=size)
    picture.thumbnail((size, size), PILImage.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()
