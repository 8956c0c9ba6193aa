"""The models a request may name: checkpoints in ``DINOSEEK_HOME/models`` and the shipped ones, by
file name alone. A key holder picks one of them to re-index a collection with; a path is never
taken from a request (only the operator's CLI takes one)."""

from __future__ import annotations

import re
from pathlib import Path

from indexer.errors import InvalidRequest, NotFound
from indexer.library import Library
from model import SHIPPED_WEIGHTS_DIR

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
SUFFIXES = (".pt", ".pth", ".safetensors")


def _folders(library: Library) -> list[Path]:
    return [library.settings.models_dir, SHIPPED_WEIGHTS_DIR]


def list_models(library: Library) -> list[dict]:
    """The checkpoints a request may name: ``{"name", "file"}``, by name (the first folder wins)."""
    found: dict[str, Path] = {}
    for folder in _folders(library):
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.is_file() and path.suffix in SUFFIXES and MODEL_NAME.fullmatch(path.stem):
                    found.setdefault(path.stem, path)
    return [{"name": name, "file": str(path)} for name, path in sorted(found.items())]


def model_file(library: Library, name: str) -> str:
    """The checkpoint file a request's model ``name`` stands for; InvalidRequest for anything but a
    bare name, NotFound for a name no folder holds."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise InvalidRequest(f"model {name!r} is not a model name (letters, digits, '_', '-', '.'; no path)")
    for entry in list_models(library):
        if entry["name"] == name:
            return entry["file"]
    raise NotFound(f"no model {name!r} in {library.settings.models_dir} or the shipped weights "
                   f"(there: {', '.join(m['name'] for m in list_models(library)) or 'none'})")
