"""Server paths a client may name: only under the allowed roots (``DINOSEEK_ALLOWED_ROOTS``)."""

from __future__ import annotations

import os
from pathlib import Path

from indexer.errors import Forbidden, InvalidRequest


def is_under(path: str | os.PathLike, roots) -> bool:
    """Whether ``path`` is one of ``roots`` or lies inside one (paths compared as given: resolve them first)."""
    return any(Path(path) == Path(root) or Path(path).is_relative_to(root) for root in roots)


def check_allowed_paths(paths: list[str], roots: tuple[Path, ...]) -> list[str]:
    """Resolved forms of ``paths``, each under one of ``roots``; anything else is ``Forbidden``."""
    if not roots:
        raise Forbidden("this server indexes no server paths: DINOSEEK_ALLOWED_ROOTS is not set")
    resolved = []
    for raw in paths:
        if "\x00" in raw:
            raise InvalidRequest(f"path {raw!r} contains a NUL byte")
        path = Path(raw)
        if ".." in path.parts:
            raise Forbidden(f"path {raw!r} contains '..'")
        if not path.is_absolute():
            raise Forbidden(f"path {raw!r} is not absolute: give a path under {', '.join(map(str, roots))}")
        real = Path(os.path.realpath(path))  # symlinks resolved: a link that leaves the roots is refused
        if not is_under(real, roots):
            raise Forbidden(f"path {raw!r} is outside the allowed roots ({', '.join(map(str, roots))})")
        resolved.append(str(real))
    return resolved
