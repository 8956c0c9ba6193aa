"""One image of the catalog: its description, its thumbnails and previews, its original file, and
deleting it (row and vectors). Pictures come with an ETag (the file's hash, as indexed), so a
browser that holds one asks again without the server reading the file."""

from __future__ import annotations

import io
from collections.abc import Container
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import delete, func, select

from indexer.catalog.models import Collection, DuplicateGroup, DuplicateMember, Image
from indexer.errors import Busy, InvalidRequest, NotFound
from indexer.ingest.reading import register_optional_plugins
from indexer.library import Library
from indexer.readback import read_back, read_back_bytes, readable_roots
from indexer.stores.patches import all_patch_ids
from model.preprocess import ImageDecodeError, open_image

MAX_THUMBNAIL = 2048  # grid tiles ask for 256-512, the viewer's preview for up to 2048
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
    """Remove an image's vectors, then its row (and its duplicate-group memberships, and the groups it
    leaves with one member); returns what it was.
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
            groups = list(s.scalars(select(DuplicateMember.group_id).where(DuplicateMember.image_id == image_id)))
            s.execute(Image.__table__.delete().where(Image.id == image_id))
            _drop_broken_groups(s, groups)
    return doc


def _drop_broken_groups(s, group_ids: list[int]) -> None:
    """Delete those of ``group_ids`` (the deleted image's groups) left with fewer than two members."""
    if not group_ids:
        return
    alive = select(DuplicateMember.group_id).where(DuplicateMember.group_id.in_(group_ids)) \
        .group_by(DuplicateMember.group_id).having(func.count() >= 2)
    s.execute(delete(DuplicateGroup).where(DuplicateGroup.id.in_(group_ids), DuplicateGroup.id.not_in(alive)))


@dataclass(frozen=True)
class Rendition:
    """A picture to send: its ETag, its type, and its bytes (None: the client's copy is current)."""

    etag: str
    mimetype: str
    data: bytes | None
    filename: str | None = None


def _source(library: Library, image_id: int, collection_name: str | None = None) -> tuple[str, int, str, str | None]:
    """The image's path, collection id, version tag (its hash as indexed) and client file name."""
    with library.catalog.session() as s:
        if collection_name is None:
            row, _ = _row(s, image_id)
        else:
            row = s.get(Image, image_id)
            if row is None or row.collection_id != library.get_collection(s, collection_name).id:
                raise NotFound(f"no image {image_id} in collection {collection_name!r}")
        version = (row.sha256 or f"id{row.id}-{row.size_bytes}")[:32]
        return row.path, row.collection_id, version, row.client_name


def read_picture(library: Library, image_id: int, collection_name: str | None = None,
                 target_long_side: int | None = None) -> PILImage.Image:
    """An indexed image's picture, read from its file as indexing reads it (``target_long_side``:
    JPEGs may decode reduced, never below it). NotFound for an id unknown (in ``collection_name``,
    when given) or a file no longer readable."""
    path, collection_id, _, _ = _source(library, image_id, collection_name)
    try:
        return read_back(path, readable_roots(library, collection_id), library.settings.max_image_pixels,
                         library.settings.max_file_mb, target_long_side=target_long_side).image
    except ImageDecodeError as exc:
        raise NotFound(f"image {image_id}: its file is no longer readable ({exc})") from exc


def thumbnail(library: Library, image_id: int, size: int = 256, known_etags: Container[str] = ()) -> Rendition:
    """A JPEG of the image, oriented, at most ``size`` pixels on its long side; no bytes when its
    ETag is among ``known_etags`` (the client's If-None-Match: the file is not read)."""
    if not 16 <= size <= MAX_THUMBNAIL:
        raise InvalidRequest(f"size must be from 16 to {MAX_THUMBNAIL} pixels, got {size}")
    _, _, version, _ = _source(library, image_id)
    etag = f"{version}-t{size}"
    if etag in known_etags:
        return Rendition(etag, "image/jpeg", None)
    picture = read_picture(library, image_id, target_long_side=size)
    picture.thumbnail((size, size), PILImage.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.convert("RGB").save(out, "JPEG", quality=85 if size <= 512 else 90)
    return Rendition(etag, "image/jpeg", out.getvalue())


def original(library: Library, image_id: int, known_etags: Container[str] = ()) -> Rendition:
    """The image's file as it is, read back under the rules thumbnails follow (only the path the
    catalog stores, only under the folders it may be read from), typed by what its bytes are;
    NotFound when it is no longer readable or no longer a picture."""
    path, collection_id, version, filename = _source(library, image_id)
    etag = f"{version}-o"
    if etag in known_etags:
        return Rendition(etag, "application/octet-stream", None, filename)
    try:
        data = read_back_bytes(path, readable_roots(library, collection_id), library.settings.max_file_mb)
    except ImageDecodeError as exc:
        raise NotFound(f"image {image_id}: its file is no longer readable ({exc})") from exc
    register_optional_plugins()  # HEIC/AVIF when pillow-heif is installed
    try:
        with open_image(io.BytesIO(data)) as probe:  # only the product's formats are recognised
            mimetype = PILImage.MIME.get(probe.format or "", "application/octet-stream")
    except (OSError, ValueError, PILImage.DecompressionBombError) as exc:
        raise NotFound(f"image {image_id}: {path} is no longer a picture ({exc})") from exc
    return Rendition(etag, mimetype, data, filename or path.rsplit("/", 1)[-1])
