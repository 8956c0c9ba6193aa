"""Opening a collection for a query: it exists, the configured model is its own, its stores are current."""

from __future__ import annotations

import os

from sqlalchemy.orm import Session

from indexer.catalog.models import Collection
from indexer.errors import InvalidRequest
from indexer.ingest.reading import LoadedImage, read_image
from indexer.library import Library
from indexer.stores import CollectionStores
from model.preprocess import ImageDecodeError


def open_for_query(library: Library, session: Session, name: str) -> tuple[Collection, CollectionStores | None]:
    """The collection and its stores (None before its first vectors), once its existence and its
    model are checked: a query model that differs from the collection's is refused."""
    collection = library.get_collection(session, name)
    if collection.model_id is None:
        return collection, None
    library.check_query_model(session, collection)
    return collection, library.stores_for(session, collection)


def read_query_file(library: Library, path: str | os.PathLike, target_long_side: int | None = None) -> LoadedImage:
    """A query picture read from a file exactly as indexing reads one (``target_long_side``: the
    JPEG draft scale indexing uses, so an indexed file scores 1.0 against itself); a file that is
    not a usable picture is a bad request naming it."""
    try:
        return read_image(os.path.abspath(str(path)), library.settings.max_image_pixels,
                          target_long_side=target_long_side, max_mb=library.settings.max_file_mb)
    except ImageDecodeError as exc:
        raise InvalidRequest(f"query image {exc}") from exc
