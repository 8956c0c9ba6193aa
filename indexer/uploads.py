"""Images sent by API clients: checked, stored once by content, and added to a collection's catalog.

An upload is stored under ``$DINOSEEK_HOME/uploads/<collection>/<sha256[:2]>/<sha256>.<ext>``:
the same bytes sent twice are one file. Every file of a request is decoded before any is kept,
so a request either adds all its pictures or fails naming the one that is not a usable image.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from indexer.catalog.models import Image
from indexer.catalog.names import check_collection_name
from indexer.durable import replace_durably, sync_folder
from indexer.errors import InvalidRequest, NotFound, UnusableImage
from indexer.ingest.reading import FileStat, LoadedImage, decode_bytes, sha256_bytes
from indexer.library import Library
from model.preprocess import ImageDecodeError

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff",
              "HEIF": "heic", "AVIF": "avif", "MPO": "jpg"}


@dataclass
class Upload:
    """One file of a request: the name the client sent and its bytes."""

    filename: str
    data: bytes


def decode_upload(upload: Upload, max_pixels: int, target_long_side: int | None = None) -> LoadedImage:
    """Decode a picture sent by a client as indexing decodes files; an empty, undecodable or
    oversized picture raises ``UnusableImage`` naming it."""
    if not upload.data:
        raise UnusableImage(f"{upload.filename!r}: empty file (0 bytes)")
    try:
        return decode_bytes(upload.filename, upload.data, FileStat(len(upload.data), 0), max_pixels,
                            target_long_side=target_long_side)
    except ImageDecodeError as exc:
        raise UnusableImage(str(exc)) from exc


def check_upload(upload: Upload, max_pixels: int) -> str:
    """The picture's format, once it decodes (see ``decode_upload``)."""
    return decode_upload(upload, max_pixels, target_long_side=64).info.format


def store_uploads(library: Library, collection_name: str, uploads: list[Upload]) -> list[str]:
    """Check every upload, then write each (once per content) and give it a ``pending`` row that
    records the client's file name. Returns the stored paths, in request order."""
    check_collection_name(collection_name)
    if not uploads:
        raise InvalidRequest("no files in the request: send one or more as multipart field 'files'")
    formats = [check_upload(u, library.settings.max_image_pixels) for u in uploads]
    root = _uploads_root(library, collection_name)
    paths: list[str] = []
    for upload, fmt in zip(uploads, formats):
        digest = sha256_bytes(upload.data)
        path = root / digest[:2] / f"{digest}.{EXTENSIONS.get(fmt, 'img')}"
        if not path.exists():
            made = [p for p in (path.parent, path.parent.parent) if not p.exists()]
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # unique across processes and threads
            tmp.write_bytes(upload.data)
            replace_durably(tmp, path)  # the row below points at it: it must outlive a power cut
            for folder in made:  # new folders' own entries too
                sync_folder(folder.parent)
        paths.append(str(path))
    with library.catalog.session() as s:
        collection = library.get_or_create_collection(s, collection_name)
        known = set(s.scalars(select(Image.path).where(Image.collection_id == collection.id, Image.path.in_(paths))))
        for upload, path in zip(uploads, paths):
            if path not in known:
                name = Path(upload.filename.replace("\x00", "")).name[:255]
                s.add(Image(collection_id=collection.id, path=path, status="pending", client_name=name or None))
                known.add(path)
    return paths


def uploaded_folder(library: Library, collection_name: str) -> Path:
    """The folder of the pictures uploaded to the collection (an index job over it finds their
    features again after an upgrade, as over any folder); ``NotFound`` when none were."""
    check_collection_name(collection_name)
    folder = _uploads_root(library, collection_name)
    if not folder.is_dir():
        raise NotFound(f"collection {collection_name!r} has no uploaded pictures")
    return folder


def _uploads_root(library: Library, collection_name: str) -> Path:
    """Where the collection's uploads are stored (``$DINOSEEK_HOME/uploads/<collection>``)."""
    return library.settings.home / "uploads" / collection_name
