"""The rule for collection names, shared by the catalog, the store files and the API's schema."""

from __future__ import annotations

import re

from indexer.errors import InvalidRequest

COLLECTION_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_COLLECTION_NAME = re.compile(COLLECTION_NAME_PATTERN)


def check_collection_name(name: str) -> str:
    """``name`` when it is a valid collection name (it also names store files), else InvalidRequest."""
    if not isinstance(name, str) or not _COLLECTION_NAME.match(name) or ".." in name:
        raise InvalidRequest(f"invalid collection name {name!r}: use 1-128 letters, digits, '_', '-' or '.', "
                             "starting with a letter or digit")
    return name
