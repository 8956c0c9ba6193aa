"""One writer per collection for the embedded stores (FAISS files, Qdrant Edge).

Those stores belong to one process at a time: two processes writing the same FAISS file would
each persist their own view and lose the other's vectors. Whoever writes vectors into a
collection (an ``index`` run in the CLI, a Celery worker's task) holds this lock for the run; a
second writer waits for it. A Qdrant server is safe for many writers and needs no lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from indexer.errors import Busy


@contextmanager
def collection_writer_lock(stores_dir: Path, collection: str, timeout: float | None = None) -> Iterator[None]:
    """Hold the collection's writer lock (an ``flock`` on ``<collection>.lock``; released even if
    the holder is killed). ``timeout`` None waits as long as it takes."""
    stores_dir.mkdir(parents=True, exist_ok=True)
    path = stores_dir / f"{collection}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() > deadline:
                    raise Busy(f"collection {collection!r} is being written by another process "
                               f"(lock {path}); try again when it is done") from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
