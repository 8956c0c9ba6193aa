"""Celery tasks: thin wrappers over ``indexer`` services, run in worker processes.

Each worker process loads the model once (``worker_process_init``: after the fork, never in the
parent, where a torch operation before forking deadlocks the children) and opens a fresh
``Library`` per task, closed when the task ends, so embedded stores are only held while written
and other processes (the CLI, the API) see the new vectors at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery import shared_task
from celery.signals import worker_process_init

if TYPE_CHECKING:
    from dinoseek.settings import Settings

_state: dict = {}


def bind_settings(settings: Settings) -> None:
    """The settings every task of this process uses (set when the app is created)."""
    _state["settings"] = settings


def _embedder():
    """This process's model, loaded on first use and kept for every later task."""
    if "embedder" not in _state:
        from indexer.library import Library

        library = Library(_state["settings"])
        _state["embedder"] = library.embedder
        library.close()
    return _state["embedder"]


@worker_process_init.connect
def _load_model_in_child(**_) -> None:
    if "settings" in _state:
        _embedder()


def _library():
    from indexer.library import Library

    return Library(_state["settings"], embedder=_embedder())


@shared_task(name="dinoseek.index")
def index(collection: str, paths: list[str], prune: bool = False, follow_symlinks: bool = False) -> dict:
    """``dinoseek index`` on a worker: the same ``index_paths`` the embedded mode runs."""
    from indexer.indexing import index_paths

    library = _library()
    try:
        return index_paths(library, collection, paths, prune=prune, follow_symlinks=follow_symlinks).to_json()
    finally:
        library.close()


@shared_task(name="dinoseek.duplicates")
def duplicates(collection: str, threshold: float | None = None) -> dict:
    """``dinoseek duplicates`` on a worker (cpu queue)."""
    from indexer.duplicates import find_duplicates

    library = _library()
    try:
        return {"groups": [g.to_json() for g in find_duplicates(library, collection, threshold=threshold)]}
    finally:
        library.close()
