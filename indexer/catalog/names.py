"""The rule for collection names, shared by the catalog, the store files and the API's schema."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from indexer.catalog.models import Collection
from indexer.errors import AlreadyExists, InvalidRequest

COLLECTION_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_COLLECTION_NAME = re.compile(COLLECTION_NAME_PATTERN)


def check_collection_name(name: str) -> str:
    """``name`` when it is a valid collection name (it also names store files), else InvalidRequest."""
    if not isinstance(name, str) or not _COLLECTION_NAME.match(name) or ".." in name:
        raise InvalidRequest(f"invalid collection name {name!r}: use 1-128 letters, digits, '_', '-' or '.', "
                             "starting with a letter or digit")
    return name


def check_no_case_twin(session: Session, name: str) -> None:
    """AlreadyExists when another collection's name differs from ``name`` only in case: on a
    case-insensitive filesystem the two would share their store files."""
    twin = session.scalar(select(Collection.name).where(func.lower(Collection.name) == name.lower(), Collection.name != name))
    if twin is not None:
        raise AlreadyExists(f"collection {twin!r} exists, and {name!r} differs from it only in case (their store files "
                            f"would be one on a case-insensitive filesystem): use {twin!r} or another name")
