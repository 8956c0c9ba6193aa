"""Server paths a client may name: only under the allowed roots (``DINOSEEK_ALLOWED_ROOTS``)."""

from __future__ import annotations

import os
from pathlib import Path

from indexer.errors import Forbidden, InvalidRequest


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
        if not any(real == root or real.is_relative_to(root) for root in roots):
            raise Forbidden(f"path {raw!r} is outside the allowed roots ({', '.join(map(str, roots))})")
        resolved.append(str(real))
    return resolved
